from pathlib import Path

import pytest

from cdc_platform.health.checks import Metrics, Thresholds, evaluate, latest_committed_offsets, parse_offsets_file

OFFSETS = """v1
{"batchWatermarkMs":0,"batchTimestampMs":1764215000000,"conf":{}}
{"engagement_project1.public.engagement_events":{"2":10,"1":7,"0":5},"engagement_project1.public.content":{"0":24}}
"""


def healthy() -> Metrics:
    return Metrics(connector_state="RUNNING", connector_tasks=["RUNNING"], slot_active=True, slot_lag_bytes=1024,
                   stream_idle_seconds={"cassandra": 5.0}, sink_lag_messages={"cassandra": 0}, dlq_depth=0,
                   parked_depth=0, freshness_seconds=0.0)


def test_a_healthy_pipeline_breaches_nothing():
    assert evaluate(healthy(), Thresholds()) == []


def test_each_threshold_breaches_on_its_own():
    t = Thresholds(max_slot_lag_bytes=100, max_sink_lag_messages=10, max_dlq_depth=5, max_parked=0,
                   max_freshness_seconds=60, max_stream_idle_seconds=120)
    m = healthy()
    m.connector_state, m.connector_tasks = "RUNNING", ["FAILED"]
    m.slot_lag_bytes = 101
    m.sink_lag_messages = {"cassandra": 11, "rest": None}
    m.stream_idle_seconds = {"cassandra": 121.0, "rest": None}
    m.dlq_depth, m.parked_depth, m.freshness_seconds = 6, 1, 61.0
    checks = {b.check: b for b in evaluate(m, t)}
    assert set(checks) == {"connector", "slot_lag_bytes", "sink_lag.cassandra", "sink_lag.rest",
                           "stream_idle.cassandra", "dlq_depth", "parked_depth", "freshness_seconds"}
    assert checks["slot_lag_bytes"].value == 101 and checks["slot_lag_bytes"].limit == 100


def test_redis_that_lost_its_state_marker_breaches():
    m = healthy()
    m.redis_state_lost = True
    assert [b.check for b in evaluate(m, Thresholds())] == ["redis_state_lost"]
    m.redis_state_lost = False
    assert evaluate(m, Thresholds()) == []


def test_idle_stream_without_backlog_is_fine():
    m = healthy()
    m.stream_idle_seconds = {"cassandra": 10_000.0}
    assert evaluate(m, Thresholds(max_stream_idle_seconds=60)) == []


def test_stopped_connector_and_inactive_slot_breach():
    m = healthy()
    m.connector_state, m.connector_tasks, m.slot_active = "STOPPED", [], False
    assert {b.check for b in evaluate(m, Thresholds())} == {"connector", "slot_active"}


def test_parse_spark_offsets_file():
    assert parse_offsets_file(OFFSETS) == {
        "engagement_project1.public.engagement_events": {0: 5, 1: 7, 2: 10},
        "engagement_project1.public.content": {0: 24},
    }


def test_latest_committed_offsets_reads_the_newest_committed_batch(tmp_path: Path):
    (tmp_path / "offsets").mkdir()
    (tmp_path / "commits").mkdir()
    assert latest_committed_offsets(tmp_path) is None
    (tmp_path / "offsets" / "0").write_text(OFFSETS.replace('"0":5', '"0":1'))
    (tmp_path / "offsets" / "1").write_text(OFFSETS)
    (tmp_path / "offsets" / "2").write_text(OFFSETS.replace('"0":5', '"0":99'))  # planned, not committed
    (tmp_path / "commits" / "0").write_text("v1\n{}")
    (tmp_path / "commits" / "1").write_text("v1\n{}")
    offsets, mtime = latest_committed_offsets(tmp_path)
    assert offsets["engagement_project1.public.engagement_events"][0] == 5
    assert mtime > 0


def test_quarantine_rise_and_long_waits_for_content_breach():
    t = Thresholds(max_new_quarantined=10, max_waiting_seconds=60)
    m = healthy()
    m.quarantined_new = {"negative_duration": 6, "unknown_content": 4}
    m.waiting_for_content, m.oldest_waiting_seconds = 3, 60.0
    assert evaluate(m, t) == []
    m.quarantined_new["unparseable_json"] = 1
    m.oldest_waiting_seconds = 61.0
    checks = {b.check: b for b in evaluate(m, t)}
    assert set(checks) == {"quarantined_new", "oldest_waiting_seconds"}
    assert "unparseable_json=1" in checks["quarantined_new"].message
    assert "3 events wait" in checks["oldest_waiting_seconds"].message


def test_core_metrics_age_the_oldest_wait_since_the_last_report(tmp_path: Path):
    import json

    from cdc_platform import names
    from cdc_platform.health.checks import core_metrics

    m = Metrics()
    core_metrics(tmp_path, m)
    assert m.waiting_for_content is None
    progress = tmp_path / names.STREAM_PROGRESS_DIR
    progress.mkdir()
    (progress / f"{names.STREAM_CORE_QUERY}.json").write_text(json.dumps(
        {"waiting": 2, "oldest_waiting_s": 30.0, "finished_at": 1_000.0, "quarantined_total": {"x": 1}}))
    core_metrics(tmp_path, m, now=1_045.0)
    assert (m.waiting_for_content, m.oldest_waiting_seconds, m.quarantined_total) == (2, 75.0, {"x": 1})


def test_source_schema_drift_breaches_with_what_changed():
    from cdc_platform.source_schema import EVENTS_COLUMNS, table_drift

    actual = {**dict(EVENTS_COLUMNS), "referrer": "text", "duration_ms": "bigint"}
    del actual["event_type"]
    drift = table_drift(EVENTS_COLUMNS, actual)
    assert drift.added == ("referrer",) and drift.dropped == ("event_type",)
    assert drift.retyped == (("duration_ms", "integer", "bigint"),)
    assert not table_drift(EVENTS_COLUMNS, dict(EVENTS_COLUMNS))

    from dataclasses import asdict

    m = healthy()
    m.schema_drift = {"engagement_events": asdict(drift)}
    [breach] = evaluate(m, Thresholds())
    assert breach.check == "schema_drift"
    assert "added referrer" in breach.message and "dropped event_type" in breach.message


class RecordingConnect:
    def __init__(self, connector: str, tasks: tuple[str, ...]):
        from cdc_platform.connect_rest_client import ConnectorState

        self.state = ConnectorState("c", connector, tasks)
        self.calls: list[str] = []

    def status(self, _name):
        return self.state

    def resume(self, _name):
        self.calls.append("resume")

    def restart(self, _name, **_kw):
        self.calls.append("restart")


@pytest.mark.parametrize(("connector", "tasks", "calls"), [
    ("PAUSED", ("PAUSED",), ["resume"]),
    ("RUNNING", ("FAILED",), ["restart"]),
    ("STOPPED", (), []),  # an operator's (or cdc_resnapshot's) deliberate stop is left alone
    ("RUNNING", ("RUNNING",), []),
])
def test_the_watchdog_resumes_a_paused_connector_restarts_a_failed_one_and_leaves_a_stopped_one(
        connector, tasks, calls):
    from cdc_platform.health.checks import connector_metrics

    connect, metrics = RecordingConnect(connector, tasks), Metrics()
    connector_metrics(connect, metrics)
    assert connect.calls == calls
    assert metrics.connector_state == connector


def test_a_query_failing_again_and_again_breaches_with_its_error(tmp_path: Path):
    import json

    from cdc_platform import names
    from cdc_platform.health.checks import failure_metrics

    progress = tmp_path / names.STREAM_PROGRESS_DIR
    progress.mkdir()
    lost = ("org.apache.spark.SparkException: [KAFKA_DATA_LOSS.START_OFFSET_RESET] Some data may have been lost\n"
            "\tat org.apache.spark.sql.kafka010.KafkaExceptions$.dataLoss(KafkaExceptions.scala:75)")
    sink = names.sink_query("cassandra")
    (progress / f"{sink}.failure.json").write_text(json.dumps({"error": lost, "failures": 4}))
    (progress / f"{names.STREAM_CORE_QUERY}.failure.json").write_text(json.dumps({"error": "x", "failures": 1}))
    m = healthy()
    failure_metrics(tmp_path, m)
    assert m.failing_queries[sink]["failures"] == 4
    [breach] = evaluate(m, Thresholds(max_query_failures=3))
    assert breach.check == "query_failing" and breach.value == {sink: 4}
    assert "Some data may have been lost" in breach.message
    assert evaluate(m, Thresholds(max_query_failures=5)) == []
