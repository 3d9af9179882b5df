"""Retry REST deliveries from the dead-letter queue on a schedule; park and alert on poison entries.

### cdc_dlq_reprocess
Every 10 minutes, one bounded round over the REST dead-letter queue (Kafka topic
`engagement_project1.dlq.rest_api`):

* entries that are due are re-sent to the REST API (idempotency keys make redelivery safe);
* failures go back to the DLQ with exponential backoff (`base_backoff_seconds` x 2^(attempts-1));
* after `max_attempts` delivery rounds an entry moves to the parked topic
  (`engagement_project1.dlq.parked`) and an alert is posted to the `cdc_alerts` webhook.

The report (delivered, requeued, parked, not yet due, depth after) is the task's XCom.
A human-readable audit log of DLQ entries is kept at `$CDC_DLQ_AUDIT_LOG`
(default `.stack/logs/restapi_dlq.log`).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from cdc_platform import dag_defaults

from cdc_alerting import WebhookAlertNotifier


@dag(
    dag_id="cdc_dlq_reprocess",
    schedule="*/10 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdc", "dlq"],
    params={
        **dag_defaults.dlq_attempt_params(),
        "max_entries": Param(None, type=["null", "integer"], minimum=1),
    },
    deadline=dag_defaults.deadline_after(8),
    default_args=dag_defaults.default_args(retries=2, retry_delay=timedelta(seconds=30),
                                           execution_timeout=timedelta(minutes=7),
                                           on_failure_callback=WebhookAlertNotifier()),
)
def cdc_dlq_reprocess():
    @task
    def reprocess_dlq(params=None) -> dict:
        from cdc_platform.orchestration.dlq_reprocess import run

        return run(max_attempts=params["max_attempts"], base_backoff_s=params["base_backoff_seconds"],
                   max_entries=params["max_entries"])

    reprocess_dlq()


cdc_dlq_reprocess()
