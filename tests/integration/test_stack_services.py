"""Each part of the local stack is the real service, reachable with the details in .stack/env."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cdc_platform import names
from cdc_platform.connect_rest_client import KafkaConnectClient
from cdc_platform.smoke_checks import run_checks
from cdc_local.stack.services.connect import secrets_properties_path
from tests.polling import poll_until

pytestmark = pytest.mark.integration

SPARK_APP = Path(__file__).parent / "spark_apps" / "count_topic.py"




def test_smoke_checks_pass_for_every_service(stack_env):
    results = run_checks(stack_env)
    assert {r.service for r in results} == {"postgres", "redis", "kafka", "kafka-connect", "cassandra", "airflow"}
    assert [r for r in results if not r.ok] == []


def test_cassandra_cql_round_trip(cassandra_session):
    ks = f"it_{uuid.uuid4().hex[:8]}"
    cassandra_session.execute(
        f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
    )
    try:
        cassandra_session.execute(f"CREATE TABLE {ks}.t (id int PRIMARY KEY, name text, score double)")
        insert = cassandra_session.prepare(f"INSERT INTO {ks}.t (id, name, score) VALUES (?, ?, ?)")
        for i in range(5):
            cassandra_session.execute(insert, (i, f"n{i}", i * 1.5))
        rows = sorted(cassandra_session.execute(f"SELECT id, name, score FROM {ks}.t"))
        assert [(r.id, r.name, r.score) for r in rows] == [(i, f"n{i}", i * 1.5) for i in range(5)]
    finally:
        cassandra_session.execute(f"DROP KEYSPACE {ks}")


def test_redis_round_trip(redis_client):
    key = f"it:{uuid.uuid4().hex}"
    redis_client.zadd(key, {"a": 1, "b": 3})
    redis_client.zincrby(key, 5, "a")
    assert redis_client.zrange(key, 0, -1, withscores=True) == [("b", 3.0), ("a", 6.0)]
    redis_client.delete(key)
    assert redis_client.exists(key) == 0


def test_redis_requires_the_generated_password(stack_env):
    import redis

    url = stack_env["REDIS_URL"]
    no_password = "redis://" + url.split("@", 1)[1]
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(no_password).ping()


def test_postgres_is_logical_and_password_protected(stack_env, pg_conn):
    import psycopg2

    with pg_conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        assert cur.fetchone()[0] == "logical"
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host=stack_env["PG_HOST"], port=stack_env["PG_PORT"], dbname=stack_env["PG_DATABASE"],
                         user=stack_env["PG_USER"], password="wrong", connect_timeout=5)


@pytest.fixture
def probe_table(pg_conn):
    suffix = uuid.uuid4().hex[:8]
    table = f"stack_probe_{suffix}"
    with pg_conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, label text, amount int)")
        cur.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        # As provisioning does for the platform's tables: the owner publishes them and lets
        # Debezium's own role read them.
        cur.execute(f"CREATE PUBLICATION probe_pub_{suffix} FOR TABLE {table}")
        cur.execute(f'GRANT SELECT ON {table} TO "{names.PG_CDC_ROLE}"')
    yield table, suffix
    with pg_conn.cursor() as cur:
        cur.execute(f"DROP PUBLICATION IF EXISTS probe_pub_{suffix}")
        cur.execute(f"DROP TABLE IF EXISTS {table}")


def test_debezium_captures_insert_update_delete(stack_env, stack_config, pg_conn, probe_table):
    table, suffix = probe_table
    connect = KafkaConnectClient(stack_env["CONNECT_URL"])
    name, prefix, slot, publication = f"probe-{suffix}", f"probe{suffix}", f"probe_{suffix}", f"probe_pub_{suffix}"
    topic = f"{prefix}.public.{table}"
    config = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "plugin.name": "pgoutput",
        "database.hostname": stack_env["PG_HOST"],
        "database.port": stack_env["PG_PORT"],
        "database.user": names.PG_CDC_ROLE,
        # Through the worker's config provider: the secret never enters Connect's config topic.
        "database.password": f"${{file:{secrets_properties_path(stack_config)}:postgres.password}}",
        "database.dbname": stack_env["PG_DATABASE"],
        "topic.prefix": prefix,
        "slot.name": slot,
        "publication.name": publication,
        "publication.autocreate.mode": "disabled",
        "table.include.list": f"public.{table}",
        "snapshot.mode": "no_data",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    }
    admin = AdminClient({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"]})
    try:
        assert connect.put_config(name, config) is True
        assert connect.wait_running(name, timeout=120).running
        assert "${file:" in connect.get_config(name)["database.password"]

        def slot_active():
            with pg_conn.cursor() as cur:
                cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                row = cur.fetchone()
                return bool(row and row[0])

        poll_until(slot_active, 90, what=f"replication slot {slot} to be active")
        with pg_conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} VALUES (1, 'first', 10)")
            cur.execute(f"UPDATE {table} SET label = 'second', amount = 20 WHERE id = 1")
            cur.execute(f"DELETE FROM {table} WHERE id = 1")

        consumer = Consumer({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"], "group.id": f"probe-{suffix}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        messages = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(messages) < 4:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            messages.append((json.loads(msg.key()), json.loads(msg.value()) if msg.value() else None))
        consumer.close()

        assert len(messages) == 4, messages
        (k1, ins), (k2, upd), (k3, dele), (k4, tomb) = messages
        assert k1 == k2 == k3 == k4 == {"id": 1}
        assert ins["op"] == "c" and ins["before"] is None and ins["after"] == {"id": 1, "label": "first", "amount": 10}
        assert upd["op"] == "u" and upd["before"]["label"] == "first" and upd["after"]["label"] == "second"
        assert dele["op"] == "d" and dele["before"] == {"id": 1, "label": "second", "amount": 20} and dele["after"] is None
        assert tomb is None
        lsns = [ins["source"]["lsn"], upd["source"]["lsn"], dele["source"]["lsn"]]
        assert lsns == sorted(lsns) and len(set(lsns)) == 3
    finally:
        connect.delete(name)
        poll_until(lambda: name not in connect.connectors(), 30, what="connector deletion")

        def drop_slot():
            with pg_conn.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                            "WHERE slot_name = %s AND NOT active", (slot,))
                cur.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                return cur.fetchone()[0] == 0

        poll_until(drop_slot, 60, what=f"slot {slot} to be released and dropped")
        with pg_conn.cursor() as cur:
            cur.execute(f"DROP PUBLICATION IF EXISTS {publication}")
        admin.delete_topics([topic])


def test_spark_submit_reads_kafka_topic(stack_env, stack_config):
    topic = f"it-spark-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"]})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    try:
        producer = Producer({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"]})
        for i in range(137):
            producer.produce(topic, key=str(i), value=json.dumps({"n": i}))
        assert producer.flush(30) == 0
        result = subprocess.run(
            [stack_env["SPARK_SUBMIT"], "--master", "local[1]", "--jars", stack_env["SPARK_KAFKA_JARS"],
             "--conf", "spark.ui.enabled=false", str(SPARK_APP), stack_env["KAFKA_BOOTSTRAP"], topic],
            capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **stack_env},
        )
        assert result.returncode == 0, result.stderr[-4000:]
        counts = [line for line in result.stdout.splitlines() if line.startswith("COUNT=")]
        assert counts == ["COUNT=137"], result.stdout[-2000:]
    finally:
        admin.delete_topics([topic])


def _airflow_token(env) -> str:
    response = requests.post(f"{env['AIRFLOW_URL']}/auth/token",
                             json={"username": env["AIRFLOW_USER"], "password": env["AIRFLOW_PASSWORD"]}, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()["access_token"]


def test_airflow_health_and_dags_from_repo(stack_env):
    health = requests.get(f"{stack_env['AIRFLOW_URL']}/api/v2/monitor/health", timeout=10).json()
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", health
    headers = {"Authorization": f"Bearer {_airflow_token(stack_env)}"}

    def dag_ids():
        response = requests.get(f"{stack_env['AIRFLOW_URL']}/api/v2/dags", headers=headers, timeout=10)
        response.raise_for_status()
        return {d["dag_id"] for d in response.json()["dags"]}

    repo_dags = {p.stem for p in (Path(__file__).parents[2] / "dags").glob("cdc_*.py")}
    assert repo_dags, "no DAG files found in dags/"
    poll_until(lambda: repo_dags <= dag_ids(), 120, interval=2, what=f"Airflow to list {sorted(repo_dags)}")


def test_airflow_rejects_wrong_password(stack_env):
    response = requests.post(f"{stack_env['AIRFLOW_URL']}/auth/token",
                             json={"username": stack_env["AIRFLOW_USER"], "password": "wrong"}, timeout=10)
    assert response.status_code == 401
