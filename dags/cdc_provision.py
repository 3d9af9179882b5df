"""Provision the CDC pipeline end to end; idempotent, safe to re-run.

### cdc_provision
Provisions everything the CDC pipeline needs, idempotently (a second run changes nothing):

1. **PostgreSQL**: `content`, `engagement_events` (REPLICA IDENTITY FULL), heartbeat table,
   publication `engagement_pub`. The logical slot `cdc_slot` (pgoutput) is Debezium's to
   create in step 4, so its initial snapshot is the one the slot exports.
2. **Kafka**: CDC, DLQ, parked and quarantine topics with explicit partitions and retention.
3. **Cassandra**: keyspace `engagement` and its tables. **Redis**: reachable, `noeviction`.
4. **Debezium**: `PUT /connectors/engagement-postgres-cdc/config`, then waits for the connector
   and its task to be RUNNING (on a first registration Debezium creates the slot, waiting for
   the transactions already open, and snapshots).
5. **Canary**: a change written to the heartbeat table must reach Kafka before the run succeeds.

Connections: `postgres_default`, `kafka_default`, `cassandra_default`, `redis_default`,
`kafka_connect_default` (its extra `database_password_ref` names the Connect config provider
entry holding the database password, so the secret never enters the connector config).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from cdc_platform import dag_defaults

from cdc_alerting import WebhookAlertNotifier


@dag(
    dag_id="cdc_provision",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdc", "provisioning"],
    params={
        "connector_timeout_seconds": Param(180, type="integer", minimum=10),
        "canary_timeout_seconds": Param(120, type="integer", minimum=10),
    },
    default_args=dag_defaults.default_args(retries=2, retry_delay=timedelta(seconds=20),
                                           on_failure_callback=WebhookAlertNotifier()),
)
def cdc_provision():
    @task
    def postgres_schema() -> dict:
        from cdc_platform.orchestration.provision import postgres_schema

        return postgres_schema()

    @task
    def kafka_topics() -> dict:
        from cdc_platform.orchestration.provision import kafka_topics

        return kafka_topics()

    @task
    def cassandra_schema() -> dict:
        from cdc_platform.orchestration.provision import cassandra_schema

        return cassandra_schema()

    @task
    def redis_check() -> dict:
        from cdc_platform.orchestration.provision import redis_check

        return redis_check()

    @task
    def register_connector(params=None) -> dict:
        from cdc_platform.orchestration.provision import connector

        return connector(timeout=params["connector_timeout_seconds"])

    @task
    def canary(params=None) -> dict:
        from cdc_platform.orchestration.provision import canary

        return canary(timeout=params["canary_timeout_seconds"])

    infrastructure = [postgres_schema(), kafka_topics(), cassandra_schema(), redis_check()]
    infrastructure >> register_connector() >> canary()


cdc_provision()
