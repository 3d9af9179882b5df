"""Watch the CDC pipeline every few minutes: connector, slot, stream, sinks, DLQ, freshness.

### cdc_watchdog
Every 5 minutes, collects the pipeline's health numbers, records them for the "CDC pipeline" page
(`cdc_ops.health_samples`) and publishes them (task log and
XCom `return_value`):

| metric | source |
|---|---|
| connector + task state | Kafka Connect REST; a FAILED task is restarted, a PAUSED connector resumed; a STOPPED one (stopped on purpose, e.g. by `cdc_resnapshot`) is only alerted |
| `slot_lag_bytes` | `pg_replication_slots` (WAL the slot still pins) |
| `sink_lag_messages` per stream query | Kafka end offsets minus the query's last committed checkpoint offsets |
| `stream_idle_seconds` per query | age of the query's last committed micro-batch |
| `dlq_depth`, `parked_depth` | DLQ entries not yet taken by the reprocess group; parked entries |
| `freshness_seconds` | age of the oldest change not yet applied by some query |
| `quarantined_new` by reason | quarantine records since the previous check (consumer group offsets) |
| `waiting_for_content`, `oldest_waiting_seconds` | events read before their content row, waiting for it |
| `failing_queries` | stream queries restarting after failures, with the error (a sink down, or offsets gone because retention ran out: such a query stops, it never skips) |

Any value beyond its threshold (the DAG params) posts one alert to the `cdc_alerts` webhook and
fails the run, so breaches show red in the grid.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from cdc_platform import dag_defaults


@dag(
    dag_id="cdc_watchdog",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdc", "monitoring"],
    params=dag_defaults.watchdog_params(),
    deadline=dag_defaults.deadline_after(4),
    default_args=dag_defaults.default_args(
        retries=1,
        retry_delay=timedelta(seconds=30),
        execution_timeout=timedelta(minutes=3),
    ),
)
def cdc_watchdog():
    @task
    def check_pipeline(params=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from cdc_platform.orchestration.watchdog import check, thresholds_from

        report = check(thresholds_from(params), auto_restart=params["auto_restart"])
        if report["breaches"]:
            raise AirflowFailException(f"{len(report['breaches'])} breach(es), alert sent: "
                                       + "; ".join(b["message"] for b in report["breaches"]))
        return report

    check_pipeline()


cdc_watchdog()
