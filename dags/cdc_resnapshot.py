"""
### cdc_resnapshot
Brings every captured row back through a fresh Debezium snapshot. Use it when the replication
slot is gone (dropped, or invalidated by `max_slot_wal_keep_size`): the connector task then
fails with "... no longer available" and the watchdog alerts on it. The changes made while no
slot recorded them can only come back this way.

Trigger it by hand from the Airflow UI with `confirm` set to true. The run:

1. stops the connector (Kafka Connect's STOPPED state);
2. resets the connector's offsets;
3. drops what is left of the slot, so that Debezium creates it with an exported snapshot;
4. resumes the connector and waits until its snapshot is done;
5. waits until the stream has applied it, then deletes from every sink the rows that were
   deleted at the source while no slot recorded it (`swept_ids` in the XCom).

Snapshot rows reach the sinks as reads at the new slot's position, so they overwrite what
changed meanwhile. The REST service receives a read event for every row again, each once.
The runbook is in the README ("A lost replication slot").
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from cdc_platform import dag_defaults

from cdc_alerting import WebhookAlertNotifier


@dag(
    dag_id="cdc_resnapshot",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdc", "debezium", "recovery"],
    params=dag_defaults.confirm_param("the run re-reads every captured table from PostgreSQL."),
    default_args=dag_defaults.default_args(
        # Every step can be re-run: stopping a stopped connector, resetting absent offsets,
        # dropping an absent slot and a sweep that finds nothing are no-ops.
        retries=1,
        retry_delay=timedelta(seconds=30),
        execution_timeout=timedelta(minutes=40),
        on_failure_callback=WebhookAlertNotifier(),
    ),
)
def cdc_resnapshot():
    @task
    def stop_connector(params=None) -> dict:
        from cdc_platform.orchestration.resnapshot import stop_connector

        return stop_connector(confirm=params["confirm"])

    @task
    def reset_offsets() -> dict:
        from cdc_platform.orchestration.resnapshot import reset_offsets

        return reset_offsets()

    @task
    def drop_slot() -> dict:
        from cdc_platform.orchestration.resnapshot import drop_slot

        return drop_slot()

    @task
    def snapshot() -> dict:
        from cdc_platform.orchestration.resnapshot import snapshot

        return snapshot()

    @task
    def sweep_deleted_rows() -> dict:
        from cdc_platform.orchestration.resnapshot import sweep_deleted_rows

        return sweep_deleted_rows()

    stop_connector() >> reset_offsets() >> drop_slot() >> snapshot() >> sweep_deleted_rows()


cdc_resnapshot()
