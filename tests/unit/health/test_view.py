from __future__ import annotations

import pytest

from cdc_platform import names
from cdc_platform.health import view

NOW = 1_800_000_000.0


def healthy_metrics(**overrides) -> dict:
    queries = names.STREAM_QUERIES
    metrics = {
        "connector_state": "RUNNING", "connector_tasks": ["RUNNING"], "connector_restarted": [],
        "slot_active": True, "slot_lag_bytes": 1024,
        "sink_lag_messages": {q: 0 for q in queries}, "sink_lag_seconds": {q: 0.0 for q in queries},
        "committed_messages": {q: 1000 for q in queries}, "stream_idle_seconds": {q: 1.0 for q in queries},
        "dlq_depth": 0, "parked_depth": 0, "freshness_seconds": 0.0, "quarantined_total": {"negative_duration": 2},
        "failing_queries": {}, "waiting_for_content": 0,
    }
    metrics.update(overrides)
    return metrics


def sample(at: float = NOW - 60, breaches=(), **metrics) -> dict:
    return {"at": at, "dag_id": "cdc_watchdog", "run_id": "scheduled__1", "metrics": healthy_metrics(**metrics),
            "breaches": list(breaches)}


def states(stage_list) -> dict[str, str]:
    return {s["id"]: s["state"] for s in stage_list}


def test_a_healthy_sample_shows_every_stage_ok():
    assert set(states(view.stages(sample(), NOW, {"state": "running"})).values()) == {"ok"}


def test_a_paused_connector_turns_debezium_red_and_says_the_watchdog_resumed_it():
    stage_list = view.stages(sample(connector_state="PAUSED", connector_restarted=["resumed from PAUSED"]), NOW,
                             {"state": "running"})
    assert states(stage_list) == {**{s: "ok" for s in view.STAGES}, "debezium": "down"}
    debezium = next(s for s in stage_list if s["id"] == "debezium")
    assert "resumed from PAUSED by the watchdog" in debezium["notes"][0]


@pytest.mark.parametrize("overrides, stage", [
    ({"slot_active": False}, "postgres"),
    ({"connector_tasks": ["FAILED"]}, "debezium"),
    ({"connector_tasks": []}, "debezium"),
    ({"failing_queries": {"redis_sink": {"failures": 4, "error": "Connection refused"}}}, "redis"),
    ({"failing_queries": {"core": {"failures": 3, "error": "boom"}}}, "spark"),
    ({"sink_lag_messages": {**{q: 0 for q in names.STREAM_QUERIES}, "rest_sink": None}}, "rest"),
])
def test_a_fact_that_says_a_stage_does_not_work_turns_it_red(overrides, stage):
    assert {s for s, state in states(view.stages(sample(**overrides), NOW, {"state": "running"})).items()
            if state != "ok"} == {stage}
    assert states(view.stages(sample(**overrides), NOW, None))[stage] == "down"


def test_a_stream_task_that_is_not_running_turns_spark_red():
    assert states(view.stages(sample(), NOW, {"state": "failed"}))["spark"] == "down"
    assert states(view.stages(sample(), NOW, None))["spark"] == "ok"  # never started: nothing to judge by


@pytest.mark.parametrize("check, stage", [
    ("slot_lag_bytes", "postgres"), ("schema_drift", "postgres"), ("connector", "debezium"),
    ("sink_lag.cassandra_sink", "cassandra"), ("stream_idle.redis_sink", "redis"), ("dlq_depth", "rest"),
    ("parked_depth", "rest"), ("freshness_seconds", "spark"), ("sink_lag.core", "spark"),
    ("quarantined_new", "spark"), ("redis_state_lost", "redis"),
])
def test_a_breach_warns_on_its_stage(check, stage):
    breach = {"check": check, "value": 1, "limit": 0, "message": f"{check} breached"}
    got = view.stages(sample(breaches=[breach]), NOW, {"state": "running"})
    assert {s["id"]: s["state"] for s in got if s["state"] != "ok"} == {stage: "warn"}
    assert next(s for s in got if s["id"] == stage)["notes"] == [f"{check} breached"]


def test_down_outranks_a_warning_on_the_same_stage_and_the_breach_is_said_once():
    breach = {"check": "connector", "value": 1, "limit": 0, "message": "connector breach"}
    debezium = view.stages(sample(breaches=[breach], connector_state="FAILED"), NOW, None)[1]
    assert (debezium["id"], debezium["state"], debezium["notes"]) == ("debezium", "down", ["connector breach"])


def test_a_stale_sample_makes_every_stage_unknown_and_says_how_old_it_is():
    stage_list = view.stages(sample(at=NOW - view.STALE_AFTER_S - 60, connector_state="PAUSED"), NOW, None)
    assert set(states(stage_list).values()) == {"unknown"}
    assert all(s["notes"][0].startswith("newest watchdog sample is 14 min old") for s in stage_list)


def test_no_sample_at_all_is_unknown():
    assert set(states(view.stages(None, NOW, None)).values()) == {"unknown"}


def test_rates_come_from_consecutive_samples_and_skip_a_reset_checkpoint():
    committed = lambda n: {q: n for q in names.STREAM_QUERIES}  # noqa: E731
    samples = [sample(at=NOW - 600, committed_messages=committed(1000)),
               sample(at=NOW - 300, committed_messages=committed(4000)),
               sample(at=NOW, committed_messages=committed(10))]
    rate = view.series(samples)["rate"]
    assert rate["t"] == [NOW - 300, NOW]
    assert rate["series"] == {sink: [10.0, None] for sink in names.STREAM_SINKS}


def test_a_sample_without_a_checkpoint_has_no_rate():
    samples = [sample(at=NOW - 300, committed_messages={}), sample(at=NOW)]
    assert view.series(samples)["rate"]["series"]["cassandra"] == [None]


def test_quarantine_series_has_one_line_per_reason_ever_seen_counted_per_interval():
    samples = [sample(at=NOW - 300, quarantined_new={"negative_duration": 1}, quarantined_total={"x": 9}),
               sample(at=NOW, quarantined_new={"negative_duration": 3, "future_event_ts": 2})]
    assert view.series(samples)["quarantine"]["series"] == {"future_event_ts": [0, 2], "negative_duration": [1, 3]}


def test_the_summary_links_events_and_the_newest_sample_to_their_runs():
    events = {"reconcile": [{"at": NOW, "dag_id": "cdc_reconcile", "run_id": "manual__2026-01-01T00:00:00+00:00",
                             "severity": "ok", "title": "no drift", "summary": {}}],
              "alert": [{"at": NOW, "dag_id": None, "run_id": None, "severity": "error", "title": "x", "summary": {}}]}
    got = view.summary([sample()], events, NOW, None)
    assert got["reconcile"][0]["link"] == "/dags/cdc_reconcile/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00"
    assert got["alerts"][0]["link"] is None
    assert got["dlq_round"] == []
    assert got["sample"] == {"at": NOW - 60, "age_s": 60.0, "link": "/dags/cdc_watchdog/runs/scheduled__1"}
