"""Reconcile the Redis aggregates with Cassandra every 15 minutes: report drift, repair it.

### cdc_reconcile
Every 15 minutes, recomputes the Redis aggregates from Cassandra (the truth), diffs them with
Redis and repairs the drift, while the stream keeps writing.

Both sinks record each row's source position (Cassandra's write timestamp, Redis's row fence).
Rows at the same position are compared; rows where one sink is ahead are *in flight* and
expected as Redis holds them, so a healthy live pipeline reports zero drift. A disagreement
that has not moved for `settle_seconds` across runs is *stuck* (Redis lost or missed the
change) and Cassandra's state is restored. The repair is one MULTI/EXEC, conditional on the
Redis watermark the diff was computed at; when the stream moved meanwhile, the diff is redone.

The report (task log, XCom `return_value`): `rows_cassandra`, `rows_in_flight`, `rows_stuck`,
`drift_before` (per aggregate: missing, extra, mismatched, max_abs_error), `drift_total`,
`repaired`, `drift_after_total` (Redis and Cassandra read again after the repair).
Drift posts one alert to the `cdc_alerts` webhook: a warning when repaired to zero, an error
otherwise. Set `repair` to false for a report-only run.

Connections: `cassandra_default`, `redis_default`, `cdc_alerts`.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from cdc_platform import dag_defaults

from cdc_alerting import WebhookAlertNotifier


@dag(
    dag_id="cdc_reconcile",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdc", "reconciliation"],
    params={
        "repair": Param(True, type="boolean"),
        "settle_seconds": Param(300, type="number", minimum=0),
    },
    deadline=dag_defaults.deadline_after(10),
    default_args=dag_defaults.default_args(retries=2, retry_delay=timedelta(seconds=30),
                                           execution_timeout=timedelta(minutes=8),
                                           on_failure_callback=WebhookAlertNotifier()),
)
def cdc_reconcile():
    @task
    def reconcile_redis(params=None) -> dict:
        from cdc_platform.orchestration.reconcile import run

        return run(repair=params["repair"], settle_seconds=params["settle_seconds"])

    reconcile_redis()


cdc_reconcile()
