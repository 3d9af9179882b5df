"""
### cdc_dlq_replay_parked
Replays parked REST deliveries once the API is healthy again. Entries are parked in
`engagement_project1.dlq.parked` after `max_attempts` failed rounds, and the watchdog alerts
on them (`parked_depth`).

Trigger it by hand from the Airflow UI with:

* `confirm`: must be true. The run sends changes to the REST API again.
* `keys`: the idempotency keys to replay, as listed in the parking alert. Leave it empty to
  replay every parked entry. The other entries stay parked.
* `max_attempts`: the attempt limit for the replayed entries.

The chosen entries go back to the DLQ with their attempts reset, and one reprocess round
delivers them right away. Their idempotency keys make a redelivery harmless. An entry that
fails again follows the usual DLQ backoff and is parked again after `max_attempts`.
The report is the task's XCom: replayed, delivered, still parked.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from cdc_platform import dag_defaults

from cdc_alerting import WebhookAlertNotifier


@dag(
    dag_id="cdc_dlq_replay_parked",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdc", "dlq", "recovery"],
    params={
        **dag_defaults.confirm_param("the run re-sends changes to the API."),
        "keys": Param([], type="array", items={"type": "string"},
                      description="Idempotency keys to replay; empty replays every parked entry."),
        "max_attempts": dag_defaults.dlq_attempt_params()["max_attempts"],
    },
    default_args=dag_defaults.default_args(
        # Safe to retry: parked offsets are committed only after the DLQ holds the entries.
        retries=1,
        retry_delay=timedelta(seconds=30),
        execution_timeout=timedelta(minutes=10),
        on_failure_callback=WebhookAlertNotifier(),
    ),
)
def cdc_dlq_replay_parked():
    @task
    def replay_parked(params=None) -> dict:
        from cdc_platform.orchestration.dlq_reprocess import replay_parked

        return replay_parked(confirm=params["confirm"], keys=params["keys"], max_attempts=params["max_attempts"])

    replay_parked()


cdc_dlq_replay_parked()
