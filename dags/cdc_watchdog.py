"""Watch the CDC pipeline every few minutes: connector, slot, stream, sinks, DLQ, freshness."""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference, Param, dag, task


DOC = """
### cdc_watchdog
Every 5 minutes, collects the pipeline's health numbers and publishes them (task log and
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


@dag(
    dag_id="cdc_watchdog",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=["cdc", "monitoring"],
    params={
        "max_slot_lag_bytes": Param(256 * 2**20, type="integer", minimum=0),
        "max_stream_idle_seconds": Param(300, type="number", minimum=0),
        "max_sink_lag_messages": Param(50_000, type="integer", minimum=0),
        "max_dlq_depth": Param(1_000, type="integer", minimum=0),
        "max_parked": Param(0, type="integer", minimum=0),
        "max_freshness_seconds": Param(300, type="number", minimum=0),
        "max_new_quarantined": Param(1_000, type="integer", minimum=0),
        "max_waiting_seconds": Param(600, type="number", minimum=0),
        "max_query_failures": Param(3, type="integer", minimum=1),
        "auto_restart": Param(True, type="boolean"),
    },
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(minutes=4),
        callback=AsyncCallback("cdc_platform.alerting.deadline_missed", kwargs={"expected": "4 minutes"}),
    ),
    default_args={
        "owner": "data-platform",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=3),
    },
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
