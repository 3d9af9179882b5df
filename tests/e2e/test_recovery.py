"""Recoveries an operator starts, or the platform runs by itself, on the live stack: each ends
with every sink exact."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import psycopg2
import pytest
import redis

from cdc_local import pipeline_driver, sink_verification
from cdc_platform import names, stream_progress
from cdc_platform.delivery import dlq
from tests.e2e.checks import (assert_rest_holds_each_change_once, assert_sinks_match_postgres, watchdog_report,
                              write_workload, xcom)
from tests.polling import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_parked_deliveries_are_replayed_from_the_airflow_ui_once_the_api_is_back(
        stream, stack_env, pg, cassandra, api):
    bootstrap = stack_env["KAFKA_BOOTSTRAP"]
    # The scheduled rounds stay out of the way while this test parks its entries itself.
    stream.set_paused("cdc_dlq_reprocess", True)
    try:
        replay_parked_entries(stream, stack_env, pg, cassandra, api, bootstrap)
    finally:
        stream.set_paused("cdc_dlq_reprocess", False)


def replay_parked_entries(stream, stack_env, pg, cassandra, api, bootstrap):
    depth_before = dlq.dlq_depth(bootstrap)
    api.set_faults(status=503)
    try:
        changes = write_workload(pg, 30, seed=31)
        poll_until(lambda: dlq.dlq_depth(bootstrap) >= depth_before + sum(changes.values()), timeout=180,
                   what="the failed deliveries in the DLQ")
        report = dlq.reprocess(bootstrap, api.url, stack_env["API_TOKEN"], max_attempts=1, base_backoff_s=0)
    finally:
        api.clear_faults()
    ours = [key for key in report.parked_keys if key.split(":")[0] in {str(rid) for rid in changes}]
    assert len(ours) == sum(changes.values())
    parked_before = dlq.dlq_depth(bootstrap, names.PARKED_TOPIC)

    refused = pipeline_driver.run_dag(stream, "cdc_dlq_replay_parked", conf={"keys": ours})
    assert refused["state"] == "failed"
    assert dlq.dlq_depth(bootstrap, names.PARKED_TOPIC) == parked_before

    run = pipeline_driver.run_dag(stream, "cdc_dlq_replay_parked", conf={"confirm": True, "keys": ours})
    assert run["state"] == "success", run["task_instances"]
    result = xcom(stream, run, "replay_parked")
    assert sorted(result["replayed"]["requeued_keys"]) == sorted(ours)
    assert result["delivery"]["delivered"] >= len(ours)
    assert result["still_parked"] == parked_before - len(ours)
    assert_rest_holds_each_change_once(api, changes)
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)


def test_redis_losing_its_data_under_traffic_is_alerted_and_repaired_by_the_first_reconcile(
        stream, stack_env, pg, cassandra, api):
    client = redis.Redis.from_url(stack_env["REDIS_URL"], decode_responses=True)
    writer_conn = psycopg2.connect(stack_env["PG_DSN"])
    written: dict = {}
    writer = threading.Thread(target=lambda: written.update(write_workload(writer_conn, 600, seed=32)))
    writer.start()
    time.sleep(1)
    client.flushdb()
    writer.join()
    writer_conn.close()
    since = datetime.now(timezone.utc)

    report = watchdog_report(stream, stack_env)
    assert report["metrics"]["redis_state_lost"] is True
    assert "redis_state_lost" in {b["check"] for b in report["breaches"]}

    stream_progress.wait_caught_up(stack_env, timeout=300)
    run = pipeline_driver.run_dag(stream, "cdc_reconcile")
    assert run["state"] == "success"
    # A scheduled run may have got there first; the first one after the flush restores Redis.
    first = min((r for r in stream.runs("cdc_reconcile", limit=5)
                 if r["state"] == "success" and r.get("start_date")
                 and datetime.fromisoformat(r["start_date"]) >= since), key=lambda r: r["start_date"])
    repaired = xcom(stream, first, "reconcile_redis")
    assert repaired["redis_state_lost"] is True and repaired["rows_stuck"] > 0
    assert repaired["repaired"] is True and repaired["drift_after_total"] == 0
    poll_until(lambda: client.exists(names.REDIS_STATE_MARKER), timeout=10, what="the state marker")
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    assert_rest_holds_each_change_once(api, written)


def test_a_lost_replication_slot_is_alerted_and_cdc_resnapshot_brings_every_sink_back_exactly(
        stream, stack_env, pg, cassandra, api):
    """The connector stopped, its slot dropped, rows inserted, updated and deleted meanwhile:
    Debezium cannot resume and the watchdog says so; cdc_resnapshot (confirmed) brings every
    sink back to PostgreSQL, the deletes included."""
    import random
    import uuid

    from cdc_platform import snapshot_recovery
    from cdc_platform.connect_rest_client import KafkaConnectClient

    connect = KafkaConnectClient(stack_env["CONNECT_URL"])
    # The rows must be in the sinks before the slot goes: what is deleted later must be swept.
    before, alive = workload_in_the_sinks(pg, cassandra, 200, seed=43)

    connect.stop(names.CONNECTOR_NAME)
    connect.wait_state(names.CONNECTOR_NAME, "STOPPED")
    admin = psycopg2.connect(stack_env["PG_DSN"])
    try:
        assert snapshot_recovery.drop_slot(admin)
    finally:
        admin.close()
    rng = random.Random(47)
    updated = rng.sample(alive, 40)
    deleted = rng.sample(sorted(set(alive) - set(updated)), 30)
    with pg.cursor() as cur:
        for rid in updated:
            cur.execute(f"UPDATE {names.PG_EVENTS_TABLE} SET duration_ms = duration_ms + 1 WHERE id = %s", (rid,))
        for rid in deleted:
            cur.execute(f"DELETE FROM {names.PG_EVENTS_TABLE} WHERE id = %s", (rid,))
        inserted = []
        for _ in range(60):
            cur.execute(f"INSERT INTO {names.PG_EVENTS_TABLE} (content_id, user_id, event_type, event_ts, duration_ms, "
                        "device, raw_payload) SELECT content_id, %s, 'play', now(), 1000, 'tv', '{}' FROM "
                        f"{names.PG_EVENTS_TABLE} WHERE id = %s RETURNING id", (str(uuid.uuid4()), alive[0]))
            inserted.append(cur.fetchone()[0])
    pg.commit()

    connect.resume(names.CONNECTOR_NAME)
    poll_until(lambda: connect.status(names.CONNECTOR_NAME).failed, timeout=180,
               what="Debezium refusing to resume without its slot")
    breaches = {b["check"] for b in watchdog_report(stream, stack_env)["breaches"]}
    assert "connector" in breaches, breaches

    refused = pipeline_driver.run_dag(stream, "cdc_resnapshot", conf={"confirm": False})
    assert refused["state"] == "failed"
    run = pipeline_driver.run_dag(stream, "cdc_resnapshot", conf={"confirm": True}, timeout=1800)
    assert run["state"] == "success", run["task_instances"]
    assert connect.status(names.CONNECTOR_NAME).running
    assert sorted(xcom(stream, run, "sweep_deleted_rows")["swept_ids"]) == sorted(deleted)

    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    # Each row alive at the snapshot holds one read event more; each row deleted meanwhile, the sweep's delete.
    expected = {rid: count + (1 if rid in set(alive) else 0) for rid, count in before.items()}
    expected.update({rid: 1 for rid in inserted})
    assert_rest_holds_each_change_once(api, expected)


def test_a_transaction_open_across_the_first_snapshot_reaches_every_sink(stream, stack_env, pg, cassandra, api):
    """Hole 8: a transaction that changes a row before Debezium's first snapshot and commits
    after it is not in the snapshot, and its change's LSN is below the snapshot rows'. The
    registration is made fresh (no connector, offsets or slot), then cdc_provision runs, and the
    transaction opens the moment the replication slot exists and commits once the snapshot is done."""
    import random

    from cdc_platform import snapshot_recovery
    from cdc_platform.connect_rest_client import KafkaConnectClient

    connect = KafkaConnectClient(stack_env["CONNECT_URL"])
    before, alive = workload_in_the_sinks(pg, cassandra, 100, seed=53)
    changed_across = random.Random(53).choice(alive)

    snapshot_recovery.stop_connector(connect)
    snapshot_recovery.reset_offsets(connect)
    connect.delete(names.CONNECTOR_NAME)
    poll_until(lambda: connect.status(names.CONNECTOR_NAME) is None, timeout=60, what="the connector gone")
    admin = psycopg2.connect(stack_env["PG_DSN"])
    admin.autocommit = True
    try:
        assert snapshot_recovery.drop_slot(admin)
        provision: dict = {}
        provisioning = threading.Thread(
            target=lambda: provision.update(run=pipeline_driver.run_dag(stream, "cdc_provision")))
        provisioning.start()

        def slot_exists() -> bool:
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (names.REPLICATION_SLOT,))
                return cur.fetchone() is not None

        poll_until(slot_exists, timeout=300, interval=0.1, what="the replication slot created")
        across = psycopg2.connect(stack_env["PG_DSN"])
        try:
            with across.cursor() as cur:
                cur.execute(f"UPDATE {names.PG_EVENTS_TABLE} SET duration_ms = duration_ms + 7 WHERE id = %s",
                            (changed_across,))

            def snapshot_done() -> bool:
                try:
                    return snapshot_recovery.snapshot_done(connect.offsets(names.CONNECTOR_NAME))
                except Exception:  # noqa: BLE001 - not registered yet
                    return False

            # Debezium creating the slot waits for this transaction; then no snapshot can finish before it commits.
            try:
                poll_until(snapshot_done, timeout=60, what="the first snapshot finished")
            except AssertionError:
                pass
            across.commit()
        finally:
            across.close()
        provisioning.join(timeout=900)
    finally:
        admin.close()
    assert provision["run"]["state"] == "success", provision["run"]["task_instances"]

    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    expected = {rid: count + (1 if rid in set(alive) else 0) for rid, count in before.items()}
    # The transaction is either in the snapshot (the slot was still being built when it began,
    # so creating the slot waited for it) or streamed after it: one read event, or a read and
    # an update. Either way each event is held once, and the last one carries its change.
    across = expected.pop(changed_across)
    assert_rest_holds_each_change_once(api, expected)
    events = api.events_for_row(changed_across)
    keys = [e["idempotency_key"] for e in events]
    assert len(keys) in (across, across + 1) and len(set(keys)) == len(keys), events


def workload_in_the_sinks(pg, cassandra, rows: int, seed: int) -> tuple[dict[int, int], list[int]]:
    """A workload written and applied to Cassandra: its changes per row, and the rows still alive."""
    before = write_workload(pg, rows, seed=seed)
    comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=300)
    assert comparison.equal, comparison.summary()
    with pg.cursor() as cur:
        cur.execute(f"SELECT id FROM {names.PG_EVENTS_TABLE} WHERE id = ANY(%s)", (sorted(before),))
        alive = sorted(r[0] for r in cur.fetchall())
    pg.rollback()
    return before, alive
