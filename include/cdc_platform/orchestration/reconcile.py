"""The ``cdc_reconcile`` task: compare the Redis aggregates with Cassandra, repair, alert on drift."""
from __future__ import annotations

from cdc_platform import alerting, names
from cdc_platform import connections as conn_ids
from cdc_platform.aggregates import reconciliation
from cdc_platform.health import recorder
from cdc_platform.hooks.cassandra import cassandra_session
from cdc_platform.hooks.redis import redis_client


def run(cassandra_conn_id: str = conn_ids.CASSANDRA_CONN_ID, redis_conn_id: str = conn_ids.REDIS_CONN_ID,
        repair: bool = True, alert: bool = True, settle_seconds: float = reconciliation.DEFAULT_SETTLE_SECONDS,
        keyspace: str = names.CASSANDRA_KEYSPACE, alerts_conn_id: str = conn_ids.ALERTS_CONN_ID) -> dict:
    """Reconcile once and return the report (see cdc_platform.aggregates.reconciliation.reconcile).

    Drift posts one alert: a warning when it was repaired to zero, an error when some is left
    (repair disabled, the stream kept moving, or the check after the repair still saw drift).
    """
    client = redis_client(redis_conn_id)
    cluster, session = cassandra_session(cassandra_conn_id)
    try:
        report = reconciliation.reconcile(session, client, keyspace=keyspace, repair=repair,
                                     settle_seconds=settle_seconds)
    finally:
        cluster.shutdown()
        client.close()
    recorder.record_event(
        "reconcile", f"{report['drift_total']} drifted member(s), {_outcome(report)}" if report["drift_total"]
        else "no drift", {key: report.get(key) for key in _RECORDED},
        severity="ok" if not report["drift_total"] else "warning" if report["drift_after_total"] == 0 else "error")
    if report["drift_total"] and alert:
        fixed = report["repaired"] and report["drift_after_total"] == 0
        alerting.send(
            title=f"CDC reconcile: {report['drift_total']} drifted member(s) in Redis, {_outcome(report)}",
            source="reconcile", severity="warning" if fixed else "error",
            message=", ".join(f"{name}: {numbers}" for name, numbers in report["drift_before"].items()
                              if numbers["missing"] or numbers["extra"] or numbers["mismatched"]),
            details=report, conn_id=alerts_conn_id)
    return report


_RECORDED = ("drift_before", "drift_total", "drift_after_total", "repaired", "repair_error", "rows_cassandra",
             "rows_in_flight", "rows_stuck", "redis_state_lost")


def _outcome(report: dict) -> str:
    if report["repair_error"]:
        return report["repair_error"]
    if not report["repaired"]:
        return "not repaired (repair disabled)"
    if report["drift_after_total"]:
        return f"repaired, but {report['drift_after_total']} member(s) still drift"
    return "repaired"
