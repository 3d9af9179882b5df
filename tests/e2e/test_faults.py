"""The fault matrix on the live stack: each fault is injected while sample traffic is written,
the platform recovers by itself, and then every sink is checked exactly against PostgreSQL."""
from __future__ import annotations

import os
import signal
import threading
import time

import psycopg2
import pytest

from cdc_platform import names
from cdc_platform.connect_rest_client import KafkaConnectClient
from tests.e2e.checks import (assert_rest_holds_each_change_once, assert_sinks_match_postgres, bring_back,
                              watchdog_report, write_workload)
from tests.polling import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def under_traffic(stack_env, fault, rows: int, seed: int) -> dict[int, int]:
    """Write a workload on its own connection, and inject ``fault`` a second into it."""
    written: dict[int, int] = {}
    errors: list[BaseException] = []

    def write() -> None:
        conn = psycopg2.connect(stack_env["PG_DSN"])
        try:
            written.update(write_workload(conn, rows, seed))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
        finally:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(1)
    fault()
    writer.join()
    if errors:
        raise errors[0]
    return written


def kill_9(supervisor, service: str) -> int:
    """SIGKILL the service's process; supervisord starts it again, as it would after a crash."""
    pid = supervisor.info(service)["pid"]
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_connector_running(stack_env, timeout: float = 180) -> None:
    connect = KafkaConnectClient(stack_env["CONNECT_URL"])
    poll_until(lambda: _running(connect), timeout=timeout, what="the connector and its task RUNNING")


def _running(connect) -> bool:
    try:
        return connect.status(names.CONNECTOR_NAME).running
    except Exception:  # noqa: BLE001 - Connect is restarting
        return False


def assert_exact(stack_env, stream, pg, cassandra, api, changes) -> None:
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    assert_rest_holds_each_change_once(api, changes)


def restart(supervisor, service: str):
    """A fault: stop ``service`` as its stop signal does, then start it and wait until it is ready."""
    def fault() -> None:
        supervisor.stop_process(service)
        bring_back(service)
    return fault


@pytest.mark.parametrize("service, seed", [("connect", 41), ("kafka", 43)])
def test_kafka_connect_or_the_broker_restarted_under_traffic_loses_and_duplicates_nothing(
        stream, stack_env, pg, cassandra, api, supervisor, service, seed):
    changes = under_traffic(stack_env, restart(supervisor, service), 800, seed=seed)
    wait_connector_running(stack_env)
    assert_exact(stack_env, stream, pg, cassandra, api, changes)


def test_kafka_connect_killed_9_under_traffic_loses_and_duplicates_nothing(
        stream, stack_env, pg, cassandra, api, supervisor):
    killed: list[int] = []
    changes = under_traffic(stack_env, lambda: killed.append(kill_9(supervisor, "connect")), 800, seed=42)
    poll_until(lambda: supervisor.alive("connect") and supervisor.info("connect")["pid"] != killed[0],
               timeout=60, what="supervisord restarting Kafka Connect")
    wait_connector_running(stack_env)
    assert_exact(stack_env, stream, pg, cassandra, api, changes)


def test_the_connector_deleted_and_registered_again_resumes_from_its_offsets_and_slot(
        stream, stack_env, pg, cassandra, api):
    """Kafka Connect keeps a deleted connector's offsets; cdc_provision registers it again under
    the same name and slot, and Debezium resumes where it stopped."""
    from cdc_local import pipeline_driver

    connect = KafkaConnectClient(stack_env["CONNECT_URL"])
    try:
        changes = under_traffic(stack_env, lambda: connect.delete(names.CONNECTOR_NAME), rows=600, seed=61)
        # Connect reports a connector being deleted as UNASSIGNED for a moment, then not at all.
        poll_until(lambda: connect.status(names.CONNECTOR_NAME) is None, timeout=60, what="the connector gone")
        report = watchdog_report(stream, stack_env)
        assert report["metrics"]["connector_state"] == "MISSING"
    finally:
        run = pipeline_driver.run_dag(stream, "cdc_provision")
    assert run["state"] == "success", run["task_instances"]
    wait_connector_running(stack_env)
    assert_exact(stack_env, stream, pg, cassandra, api, changes)


def test_changes_lost_to_retention_before_the_stream_read_them_stop_the_query_with_an_alert(
        stream, stack_env, pg, cassandra, api):
    """Changes gone from Kafka before the stream read them (deleted from the events topic while
    the stream is stopped, as retention deletes them) are never skipped: the core query stops
    on the data loss and the watchdog says so. The runbook brings the rows back: the query's
    checkpoint set aside, then cdc_resnapshot re-reads the source."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    from cdc_local import pipeline_driver
    from cdc_platform import stream_progress
    from cdc_platform.health import checks as health_checks

    bootstrap = stack_env["KAFKA_BOOTSTRAP"]
    pipeline_driver.stop_stream(stream, stack_env)
    try:
        end_before = topic_end_offsets(bootstrap, names.EVENTS_TOPIC)
        changes = write_workload(pg, 100, seed=71)
        poll_until(lambda: sum(topic_end_offsets(bootstrap, names.EVENTS_TOPIC).values()) - sum(end_before.values())
                   >= sum(changes.values()), timeout=120, what="Debezium publishing the workload")
        ends = topic_end_offsets(bootstrap, names.EVENTS_TOPIC)
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
        for future in admin.delete_records([TopicPartition(names.EVENTS_TOPIC, p, o) for p, o in ends.items()]).values():
            future.result(30)
    finally:
        pipeline_driver.start_stream(stream, stack_env, timeout=300)

    core = names.STREAM_CORE_QUERY
    root = stream_progress.stream_checkpoint_root(stack_env)
    poll_until(lambda: ((health_checks.read_progress(root, f"{core}.failure") or {}).get("failures") or 0) >= 3,
               timeout=240, what="the core query failing on the lost offsets again and again")
    breaches = {b["check"]: b for b in watchdog_report(stream, stack_env)["breaches"]}
    assert core in breaches["query_failing"]["value"], breaches
    # Spark names it a data loss, or its Kafka consumer an offset out of range: either way, said.
    message = breaches["query_failing"]["message"].lower()
    assert "lost" in message or "out of range" in message, message
    rows = cassandra.execute(f"SELECT id FROM {names.CASSANDRA_KEYSPACE}.{names.CASSANDRA_EVENTS_TABLE} "
                             f"WHERE id IN ({','.join(map(str, changes))})")
    assert list(rows) == [], "changes the stream never read reached Cassandra"

    pipeline_driver.stop_stream(stream, stack_env)
    try:
        pipeline_driver.set_aside_checkpoint(stack_env, core)
    finally:
        pipeline_driver.start_stream(stream, stack_env, timeout=300)
    run = pipeline_driver.run_dag(stream, "cdc_resnapshot", conf={"confirm": True}, timeout=1800)
    assert run["state"] == "success", run["task_instances"]
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    with pg.cursor() as cur:
        cur.execute(f"SELECT id FROM {names.PG_EVENTS_TABLE} WHERE id = ANY(%s)", (sorted(changes),))
        alive = {r[0] for r in cur.fetchall()}
    pg.rollback()
    # Their changes were lost; the snapshot's read of each row still alive is what the API gets.
    assert_rest_holds_each_change_once(api, {rid: 1 if rid in alive else 0 for rid in changes})


def topic_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cdc-test-offsets", "log_level": 0})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


# Known gap, kept out of `make test` (run it with `make test-known-gaps`): Debezium resumes at
# once, but the Airflow scheduler, whose metadata database this is too, hits OperationalError in
# its loop and then waits for its running tasks before exiting, and the continuous cdc_stream
# task never ends, so no DAG runs until the scheduler is restarted (observed: cdc_reconcile
# triggered by this test never ran).
# A hung scheduler is restarted after 2 minutes, and the watchdog that restarts the connector
# task runs on its next 5-minute tick: more than the default 15 minutes must be allowed.
@pytest.mark.timeout(1800)
def test_postgres_restarted_with_a_fast_shutdown_loses_and_duplicates_nothing(
        stream, stack_env, pg, cassandra, api, supervisor):
    """PostgreSQL, also Airflow's metadata database, down for 20 s (a restart with recovery).
    Whether the scheduler survives depends on what its loop was doing: when it leaves the loop
    it waits in LocalExecutor.end() for the never-ending stream task, and its liveness probe
    restarts it and alerts. Either way DAGs run again (the watchdog restarts the connector
    task, reconcile checks Redis) and every sink is exact."""
    from datetime import datetime, timezone

    from cdc_local import pipeline_driver

    since = datetime.now(timezone.utc).isoformat()
    scheduler_pid = supervisor.info("airflow-scheduler")["pid"]
    conn = psycopg2.connect(stack_env["PG_DSN"])
    before = write_workload(conn, 300, seed=44)
    conn.close()
    supervisor.stop_process("postgres")  # stopsignal INT: PostgreSQL's fast shutdown
    time.sleep(20)
    bring_back("postgres")
    conn = psycopg2.connect(stack_env["PG_DSN"])
    after = write_workload(conn, 300, seed=45)
    conn.close()
    poll_until(lambda: _answers(pg), timeout=30, what="the tests' own PostgreSQL connection")
    # The watchdog restarts a connector task that failed while its database was away.
    wait_connector_running(stack_env, timeout=600)
    pipeline_driver.start_stream(stream, stack_env, timeout=600)
    assert_exact(stack_env, stream, pg, cassandra, api, {**before, **after})

    # Had the scheduler hung, its probe restarted it (a new pid) and said why.
    restarts = pipeline_driver.alerts_since(stack_env, since, source="scheduler_liveness")
    assert all("no heartbeat" in alert["message"] for alert in restarts), restarts
    if restarts:
        assert supervisor.info("airflow-scheduler")["pid"] != scheduler_pid


def _answers(pg) -> bool:
    try:
        with pg.cursor() as cur:
            cur.execute("SELECT 1")
        pg.rollback()
        return True
    except psycopg2.Error:
        return False


def test_the_rest_service_stopped_under_traffic_fills_the_dlq_and_reprocess_delivers_once(
        stream, stack_env, pg, cassandra, api, supervisor):
    from cdc_local import pipeline_driver, sink_verification
    from cdc_platform import stream_progress
    from cdc_platform.delivery import dlq

    bootstrap = stack_env["KAFKA_BOOTSTRAP"]
    depth_before = dlq.dlq_depth(bootstrap)
    changes = under_traffic(stack_env, lambda: supervisor.stop_process("restapi"), 300, seed=46)
    try:
        # Cassandra (and Redis) keep up while every post is refused.
        comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=180)
        assert comparison.equal, comparison.summary()
        stream_progress.wait_caught_up(stack_env, timeout=300)
        assert dlq.dlq_depth(bootstrap) > depth_before, "no delivery failed while the service was stopped"
    finally:
        bring_back("restapi")
    run = pipeline_driver.run_dag(stream, "cdc_dlq_reprocess", conf={"base_backoff_seconds": 0})
    assert run["state"] == "success"
    poll_until(lambda: dlq.dlq_depth(bootstrap) == 0, timeout=180, what="the DLQ drained by reprocessing")
    assert_exact(stack_env, stream, pg, cassandra, api, changes)
