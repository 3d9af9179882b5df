"""Tasks of ``cdc_provision``: each idempotent, each returning what it found or changed."""
from __future__ import annotations

import logging
from contextlib import closing

from airflow.providers.postgres.hooks.postgres import PostgresHook

from cdc_platform import connections as conn_ids
from cdc_platform import names, provisioning
from cdc_platform.hooks.cassandra import cassandra_session
from cdc_platform.hooks.kafka import kafka_config
from cdc_platform.hooks.redis import redis_client
from cdc_platform.hooks.kafka_connect import KafkaConnectHook

log = logging.getLogger(__name__)


def postgres_schema(postgres_conn_id: str = conn_ids.POSTGRES_CONN_ID) -> dict:
    with closing(PostgresHook(postgres_conn_id=postgres_conn_id).get_conn()) as conn:
        created = provisioning.apply_postgres_schema(conn)
    log.info("postgres schema applied; created: %s", created)
    return created


def kafka_topics(kafka_conn_id: str = conn_ids.KAFKA_CONN_ID) -> dict:
    created = provisioning.create_topics(kafka_config(kafka_conn_id))
    log.info("kafka topics created: %s", created or "none (all present)")
    return {"created": created, "expected": [t.name for t in provisioning.TOPICS]}


def cassandra_schema(cassandra_conn_id: str = conn_ids.CASSANDRA_CONN_ID) -> dict:
    cluster, session = cassandra_session(cassandra_conn_id)
    try:
        return {"statements": provisioning.apply_cassandra_schema(session)}
    finally:
        cluster.shutdown()


def redis_check(redis_conn_id: str = conn_ids.REDIS_CONN_ID) -> dict:
    from cdc_platform.aggregates import establish_state_marker

    client = redis_client(redis_conn_id)
    return {**provisioning.check_redis(client), "state_marker": establish_state_marker(client)}


def connector(kafka_connect_conn_id: str = conn_ids.KAFKA_CONNECT_CONN_ID,
              postgres_conn_id: str = conn_ids.POSTGRES_CONN_ID, timeout: float = 180) -> dict:
    from cdc_platform.connector_config import render

    hook = KafkaConnectHook(kafka_connect_conn_id)
    password_ref = hook.get_connection(kafka_connect_conn_id).extra_dejson.get("database_password_ref")
    if not password_ref:
        raise ValueError(f"connection {kafka_connect_conn_id} needs extra['database_password_ref'], a Connect "
                         "config-provider reference such as ${file:/path/secrets.properties:postgres.password}")
    extra = hook.get_connection(kafka_connect_conn_id).extra_dejson
    pg = PostgresHook.get_connection(postgres_conn_id)
    config = render(pg.host, int(pg.port or 5432), extra.get("database_user") or names.PG_CDC_ROLE, password_ref)
    report = provisioning.register_connector(hook.get_conn(), config, timeout=timeout)
    log.info("connector: %s", report)
    return report


def canary(postgres_conn_id: str = conn_ids.POSTGRES_CONN_ID, kafka_conn_id: str = conn_ids.KAFKA_CONN_ID,
           timeout: float = 120) -> dict:
    with closing(PostgresHook(postgres_conn_id=postgres_conn_id).get_conn()) as conn:
        seconds = provisioning.run_canary(conn, kafka_config(kafka_conn_id), timeout=timeout)
    log.info("canary change reached Kafka in %.2fs", seconds)
    return {"seconds": round(seconds, 3)}
