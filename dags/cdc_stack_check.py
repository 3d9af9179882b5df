"""Smoke-checks every service of the platform with one real round trip each.

### cdc_stack_check
One real round trip per service (PostgreSQL, Redis, Kafka, Kafka Connect + Debezium,
Cassandra, Airflow). Fails, naming the broken service, if any check fails.
Manual trigger; safe to run any time.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task

from cdc_platform import dag_defaults


@dag(
    dag_id="cdc_stack_check",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["cdc", "ops"],
    default_args=dag_defaults.default_args(retries=1, retry_delay=timedelta(seconds=30)),
)
def cdc_stack_check():
    @task
    def check_services() -> dict[str, str]:
        from cdc_platform.smoke_checks import run_checks_from_environment

        return run_checks_from_environment()

    check_services()


cdc_stack_check()
