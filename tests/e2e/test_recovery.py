"""Recoveries an operator starts, or the platform runs by itself, on the live stack: each ends
with every sink exact."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import psycopg2
import pytest
import redis

from cdc_platform import names, runbook
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

    refused = runbook.run_dag(stream, "cdc_dlq_replay_parked", conf={"keys": ours})
    assert refused["state"] == "failed"
    assert dlq.dlq_depth(bootstrap, names.PARKED_TOPIC) == parked_before

    run = runbook.run_dag(stream, "cdc_dlq_replay_parked", conf={"confirm": True, "keys": ours})
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

    runbook.wait_caught_up(stack_env, timeout=300)
    run = runbook.run_dag(stream, "cdc_reconcile")
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
