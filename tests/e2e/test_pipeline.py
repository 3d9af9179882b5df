"""The whole pipeline, driven through Airflow like a user would, on the real stack.

PostgreSQL -> Debezium -> Kafka -> Spark (cdc_stream DAG) -> Cassandra, Redis, REST + DLQ,
with provisioning, reconciliation, DLQ reprocessing, the watchdog and deadline alerts as
Airflow DAG runs. The tests run in file order and share the running stream.
"""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
import redis

from cdc_local import pipeline_driver, sink_verification
from cdc_platform import names, stream_progress
from cdc_platform.delivery import dlq
from cdc_platform.connect_rest_client import KafkaConnectClient
from tests.e2e.checks import (answers, assert_rest_holds_each_change_once, assert_sinks_match_postgres,
                              bring_back, insert_content_with_events, redis_fences, write_workload, xcom)
from tests.polling import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]



def test_provisioning_through_airflow_is_idempotent(airflow):
    first = pipeline_driver.run_dag(airflow, "cdc_provision")
    second = pipeline_driver.run_dag(airflow, "cdc_provision")
    assert first["state"] == second["state"] == "success"
    assert xcom(airflow, second, "postgres_schema") == {"publication": False}
    assert xcom(airflow, second, "kafka_topics")["created"] == []
    connector = xcom(airflow, second, "register_connector")
    assert connector["changed"] is False and connector["tasks"] == ["RUNNING"]
    assert xcom(airflow, second, "canary")["seconds"] < 60


def test_a_few_thousand_changes_reach_every_sink_exactly(stream, stack_env, pg, cassandra, api):
    changes = write_workload(pg, 2000, seed=11)
    comparison, _ = assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    assert comparison.expected >= 1800
    assert_rest_holds_each_change_once(api, changes)


def test_a_dead_api_fills_the_dlq_without_stalling_cassandra_and_reprocess_delivers_once(
        stream, stack_env, pg, cassandra, api):
    depth_before = dlq.dlq_depth(stack_env["KAFKA_BOOTSTRAP"])
    api.set_faults(status=503)
    try:
        changes = write_workload(pg, 60, seed=12)
        # Cassandra (and Redis) keep up while every REST post fails.
        comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=180)
        assert comparison.equal, comparison.summary()
        deadline = time.monotonic() + 180
        while dlq.dlq_depth(stack_env["KAFKA_BOOTSTRAP"]) < depth_before + sum(changes.values()):
            assert time.monotonic() < deadline, "failed deliveries did not reach the DLQ"
            time.sleep(2)
    finally:
        api.clear_faults()
    audit = pipeline_driver.dlq_audit_log(stack_env).read_text()
    assert f"key={min(changes)}:" in audit and "HTTP 503" in audit
    run = pipeline_driver.run_dag(stream, "cdc_dlq_reprocess", conf={"base_backoff_seconds": 0})
    assert run["state"] == "success"
    # Unpausing also lets the scheduler start its own run, which may take the entries first:
    # what counts is that the API ends up holding every change once and the DLQ is drained.
    deadline = time.monotonic() + 120
    while dlq.dlq_depth(stack_env["KAFKA_BOOTSTRAP"]) > 0:
        assert time.monotonic() < deadline, "DLQ not drained by reprocessing"
        time.sleep(2)
    assert_rest_holds_each_change_once(api, changes)


def test_a_redis_outage_holds_back_only_redis_which_then_catches_up_exactly(
        stream, stack_env, pg, cassandra, api, supervisor):
    supervisor.stop_process("redis")
    try:
        changes = write_workload(pg, 400, seed=21)
        # Cassandra and the REST service stay fresh while the Redis query waits and retries.
        comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=180)
        assert comparison.equal, comparison.summary()
        deadline = time.monotonic() + 180
        while True:
            try:
                assert_rest_holds_each_change_once(api, changes)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "the REST service fell behind during the Redis outage"
                time.sleep(2)
        assert not stream_progress.stream_caught_up(stack_env), "the Redis query cannot have caught up without Redis"
    finally:
        bring_back("redis")
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)


def test_a_cassandra_outage_holds_back_only_cassandra_which_then_catches_up_exactly(
        stream, stack_env, pg, cassandra, api, supervisor):
    supervisor.stop_process("cassandra")
    try:
        changes = write_workload(pg, 400, seed=22)
        # Redis and the REST service stay fresh while the Cassandra query waits and retries.
        deadline = time.monotonic() + 180
        while True:
            fences = redis_fences(stack_env, changes)
            if all(fence.get("pos") for fence in fences.values()):
                try:
                    assert_rest_holds_each_change_once(api, changes)
                    break
                except AssertionError:
                    pass
            assert time.monotonic() < deadline, "Redis or the REST service fell behind during the Cassandra outage"
            time.sleep(2)
        with pg.cursor() as cur:
            cur.execute(f"SELECT id FROM {names.PG_EVENTS_TABLE} WHERE id = ANY(%s)", (list(changes),))
            alive = {row[0] for row in cur.fetchall()}
        pg.commit()
        assert {rid for rid, fence in fences.items() if fence["deleted"] == "0"} == alive
    finally:
        bring_back("cassandra")
    # This test's own session marked the host down; its driver reconnects with a backoff.
    poll_until(lambda: answers(cassandra), timeout=180, what="the test's Cassandra session reconnecting")
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)


def test_a_slow_rest_api_holds_back_only_the_rest_sink(stream, stack_env, pg, cassandra, api):
    # Every post waits 4.5 s (under the sink's 5 s timeout): slow, not failing.
    api.set_faults(latency_ms=4500)
    try:
        changes = write_workload(pg, 300, seed=23)
        deadline = time.monotonic() + 180
        while not all(fence.get("pos") for fence in redis_fences(stack_env, changes).values()):
            assert time.monotonic() < deadline, "Redis fell behind the slow REST API"
            time.sleep(0.3)
        while True:
            caught_up = stream_progress.queries_caught_up(stack_env)
            if caught_up[names.sink_query("cassandra")] and caught_up[names.sink_query("redis")]:
                break
            assert time.monotonic() < deadline, f"Cassandra or Redis fell behind the slow REST API: {caught_up}"
            time.sleep(0.3)
        assert not caught_up[names.sink_query("rest")], "the REST sink kept up: the test did not slow it down"
    finally:
        api.clear_faults()
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    assert_rest_holds_each_change_once(api, changes)


def test_events_read_before_their_new_content_wait_for_it_and_reach_every_sink(
        stream, stack_env, pg, cassandra, api):
    """The stream paused; 2,000 new content rows and 30,000 events for the last of them in one
    transaction; the stream resumed reads events before their content. None may be lost."""
    try:
        pipeline_driver.stop_stream(stream, stack_env, timeout=300)
        last, ids = insert_content_with_events(pg, 2000, 30_000, "tv")
    finally:
        pipeline_driver.start_stream(stream, stack_env, timeout=300)

    stream_progress.wait_caught_up(stack_env, timeout=600)
    comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=300)
    assert comparison.equal, comparison.summary()
    client = redis.Redis.from_url(stack_env["REDIS_URL"], decode_responses=True)
    assert client.zscore(names.REDIS_COUNTS, last) == 30_000
    assert_rest_holds_each_change_once(api, {rid: 1 for rid in ids})
    quarantined = sink_verification.quarantine_reasons(stack_env["KAFKA_BOOTSTRAP"])
    assert quarantined.get("unknown_content", 0) == 0, quarantined


def test_events_committed_with_their_content_while_the_stream_runs_reach_every_sink(
        stream, stack_env, pg, cassandra, api):
    """Content and its events in one transaction, read while the stream runs: the core query's
    catalogue learns the content after it has read (some of) the events, which then wait."""
    last, ids = insert_content_with_events(pg, 200, 5_000, "mobile")
    stream_progress.wait_caught_up(stack_env, timeout=300)
    client = redis.Redis.from_url(stack_env["REDIS_URL"], decode_responses=True)
    deadline = time.monotonic() + 120
    while client.zscore(names.REDIS_COUNTS, last) != 5_000:
        assert time.monotonic() < deadline, f"Redis counts {client.zscore(names.REDIS_COUNTS, last)} of 5000"
        time.sleep(1)
    comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=300)
    assert comparison.equal, comparison.summary()
    assert_rest_holds_each_change_once(api, {rid: 1 for rid in ids})
    assert sink_verification.quarantine_reasons(stack_env["KAFKA_BOOTSTRAP"]).get("unknown_content", 0) == 0


def test_kill_9_of_the_spark_driver_mid_stream_still_converges_exactly(stream, stack_env, pg, cassandra, api):
    writer_conn = psycopg2.connect(stack_env["PG_DSN"])
    result: dict = {}
    writer = threading.Thread(target=lambda: result.update(write_workload(writer_conn, 1500, seed=13)))
    writer.start()
    time.sleep(2)
    killed = pipeline_driver.kill_stream_driver()
    writer.join()
    writer_conn.close()
    assert killed, "no stream driver process found to kill"
    # Airflow retries the task; the job resumes from its checkpoints.
    pipeline_driver.start_stream(stream, stack_env, timeout=300)
    assert set(pipeline_driver.stream_driver_pids()).isdisjoint(killed)
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    assert_rest_holds_each_change_once(api, result)


def test_reconcile_finds_and_repairs_injected_drift(stream, stack_env):
    client = redis.Redis.from_url(stack_env["REDIS_URL"], decode_responses=True)
    members = client.zrange(names.REDIS_COUNTS, 0, -1, withscores=True)
    assert len(members) >= 2
    (gone, _), (wrong, score) = members[0], members[1]
    client.zrem(names.REDIS_COUNTS, gone)
    client.zadd(names.REDIS_COUNTS, {wrong: score + 7})
    client.zadd(names.REDIS_COUNTS, {"not-a-content-id": 3})

    since = datetime.now(timezone.utc)
    run = pipeline_driver.run_dag(stream, "cdc_reconcile")
    assert run["state"] == "success"
    # A scheduled run may have reached the drift first (one started before the injection can
    # still read Redis after it); every run that ended after the injection is a candidate.
    reports = [xcom(stream, r, "reconcile_redis") for r in stream.runs("cdc_reconcile", limit=5)
               if r["state"] == "success" and r.get("end_date")
               and datetime.fromisoformat(r["end_date"]) >= since]
    found = [r for r in reports if r["drift_total"] > 0]
    assert len(found) == 1, reports
    report = found[0]
    counts = report["drift_before"]["counts"]
    assert (counts["missing"], counts["extra"], counts["mismatched"]) == (1, 1, 1)
    assert counts["max_abs_error"] >= 7
    assert report["repaired"] is True and report["drift_after_total"] == 0
    assert client.zscore(names.REDIS_COUNTS, "not-a-content-id") is None
    assert client.zscore(names.REDIS_COUNTS, wrong) == score


def test_watchdog_reports_health_then_alerts_on_and_resumes_a_stopped_connector(stream, stack_env):
    loose = {"max_parked": 10**9, "max_dlq_depth": 10**9, "max_new_quarantined": 10**9}
    healthy = pipeline_driver.run_dag(stream, "cdc_watchdog", conf=loose)
    assert healthy["state"] == "success"
    metrics = xcom(stream, healthy, "check_pipeline")["metrics"]
    assert metrics["connector_state"] == "RUNNING" and metrics["slot_active"] is True
    assert set(metrics["sink_lag_messages"]) == set(names.STREAM_QUERIES)
    assert metrics["waiting_for_content"] == 0 and "quarantined_new" in metrics

    connect = KafkaConnectClient(stack_env["CONNECT_URL"])
    since = datetime.now(timezone.utc).isoformat()
    connect.pause(names.CONNECTOR_NAME)

    def paused_alerts():
        return [a for a in pipeline_driver.alerts_since(stack_env, since, source="watchdog")
                if a["details"]["metrics"]["connector_state"] == "PAUSED"]

    # Our run, or a scheduled one that gets there first (it may resume the connector before we
    # even see it paused), notices the paused connector, alerts and resumes it.
    triggered = False
    deadline = time.monotonic() + 120
    alerts = paused_alerts()
    while not alerts:
        assert time.monotonic() < deadline, "no watchdog alert for the paused connector"
        if not triggered and connect.status(names.CONNECTOR_NAME).connector == "PAUSED":
            pipeline_driver.run_dag(stream, "cdc_watchdog", conf=loose)
            triggered = True
        else:
            time.sleep(1)
        alerts = paused_alerts()
    assert alerts and "connector" in alerts[0]["title"]
    assert alerts[0]["details"]["metrics"]["connector_restarted"] == ["resumed from PAUSED"]
    assert connect.wait_running(names.CONNECTOR_NAME, timeout=60).running


def parked_keys(bootstrap: str) -> set[str]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{uuid.uuid4().hex}", "log_level": 0,
                         "enable.auto.commit": False})
    keys = set()
    try:
        parts = consumer.list_topics(names.PARKED_TOPIC, timeout=10).topics[names.PARKED_TOPIC].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(names.PARKED_TOPIC, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(names.PARKED_TOPIC, p, 0) for p in parts])
        deadline = time.monotonic() + 30
        while any(ends.values()) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            keys.add(msg.key().decode() if msg.key() else "")
            if msg.offset() + 1 >= ends[msg.partition()]:
                ends[msg.partition()] = 0
    finally:
        consumer.close()
    return keys


def test_a_poison_dlq_entry_is_parked_with_an_alert(stream, stack_env):
    now = datetime.now(timezone.utc)
    poison_key = "poison:" + "x" * 300  # longer than the API accepts: a permanent 422
    writer = dlq.DlqWriter(stack_env["KAFKA_BOOTSTRAP"])
    # One round short of the default limit, so whichever run takes it (ours or a scheduled one) parks it.
    writer.send(names.DLQ_TOPIC, dlq.DlqEntry(poison_key, {"id": -1}, "HTTP 422", 4, now, now, now))
    assert writer.flush() == 1
    run = pipeline_driver.run_dag(stream, "cdc_dlq_reprocess", conf={"max_attempts": 5, "base_backoff_seconds": 0})
    assert run["state"] == "success"
    deadline = time.monotonic() + 120
    alerts = []
    while not alerts:
        assert time.monotonic() < deadline, "no alert for the parked entry"
        alerts = [a for a in pipeline_driver.alerts_since(stack_env, now.isoformat(), source="dlq")
                  if poison_key in a["details"].get("parked_keys", [])]
        time.sleep(2)
    assert "parked" in alerts[0]["title"]
    assert poison_key in parked_keys(stack_env["KAFKA_BOOTSTRAP"])


def test_a_deadline_alert_fires_for_a_late_run(airflow, stack_env):
    """A run whose logical date is an hour old is past its deadline at once; the DAG is paused
    so the run stays queued (late work), and the triggerer posts the deadline alert."""
    airflow.set_paused("cdc_dlq_reprocess", True)
    since = datetime.now(timezone.utc).isoformat()
    run_id = f"late_{uuid.uuid4().hex[:8]}"
    logical = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    airflow.request("POST", "/dags/cdc_dlq_reprocess/dagRuns",
                    json={"dag_run_id": run_id, "logical_date": logical, "conf": {}})
    try:
        deadline = time.monotonic() + 180
        alerts = []
        while not alerts:
            assert time.monotonic() < deadline, "no deadline alert within 180s"
            alerts = [a for a in pipeline_driver.alerts_since(stack_env, since, source="deadline")
                      if a["details"].get("run_id") == run_id]
            time.sleep(2)
        assert alerts[0]["details"]["dag_id"] == "cdc_dlq_reprocess"
        assert alerts[0]["title"] == "Deadline missed: cdc_dlq_reprocess"
    finally:
        airflow.request("PATCH", f"/dags/cdc_dlq_reprocess/dagRuns/{run_id}", json={"state": "failed"})


def test_marking_the_stream_task_failed_stops_the_job_gracefully(stream, stack_env):
    assert pipeline_driver.stream_driver_pids()
    try:
        stopped = pipeline_driver.stop_stream(stream, stack_env, timeout=120)
        assert stopped, "no running stream task was stopped"
        run_id, try_number = stopped[0]
        task_log = "\n".join(pipeline_driver.stream_task_log_tail(stack_env, lines=400, run_id=run_id,
                                                                  try_number=try_number))
        assert "stopping after the running micro-batches" in task_log
        assert "exiting hard" not in task_log
    finally:
        # Unpaused again, the continuous DAG brings the stream back from its checkpoints.
        pipeline_driver.start_stream(stream, stack_env, timeout=300)
