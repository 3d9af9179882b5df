"""`down` leaves no process behind and `up` after `down` keeps every service's data.

This restarts the whole shared stack, so it is marked ``restarts_stack``: tests/e2e/conftest.py
runs it before the pipeline tests that need a long-running stream.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cdc_local.stack.__main__ import _stack_processes
from cdc_local.stack.service import port_open

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.restarts_stack]


def _stack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cdc_local.stack", *args], capture_output=True, text=True,
                          timeout=900, check=False, env={**os.environ})


def test_down_then_up_keeps_data_and_leaves_no_process(stack_env, stack_config):
    import psycopg2
    import redis

    from cdc_platform.cassandra_cluster import cassandra_cluster_from_env

    marker = uuid.uuid4().hex
    with psycopg2.connect(stack_env["PG_DSN"]) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS lifecycle_marker (marker text PRIMARY KEY)")
        cur.execute("INSERT INTO lifecycle_marker VALUES (%s)", (marker,))
    redis.Redis.from_url(stack_env["REDIS_URL"]).set(f"lifecycle:{marker}", marker)
    cluster = cassandra_cluster_from_env(stack_env)
    session = cluster.connect()
    session.execute("CREATE KEYSPACE IF NOT EXISTS lifecycle WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.execute("CREATE TABLE IF NOT EXISTS lifecycle.marker (marker text PRIMARY KEY)")
    session.execute("INSERT INTO lifecycle.marker (marker) VALUES (%s)", (marker,))
    cluster.shutdown()
    topic = "lifecycle-marker"
    admin = AdminClient({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"]})
    if topic not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"]})
    producer.produce(topic, value=marker)
    assert producer.flush(30) == 0

    down = _stack("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert _stack_processes(stack_config) == []
    for name, port in stack_config.ports.items():
        assert not port_open(stack_config.host, port), f"{name} still listening on {port}"
    status = _stack("status")
    assert status.returncode != 0 and "down" in status.stdout

    up = _stack("up")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    status = _stack("status")
    assert status.returncode == 0, status.stdout
    for line in status.stdout.splitlines()[1:-1]:
        assert " RUNNING " in line, line

    with psycopg2.connect(stack_env["PG_DSN"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM lifecycle_marker WHERE marker = %s", (marker,))
        assert cur.fetchone()[0] == 1
    assert redis.Redis.from_url(stack_env["REDIS_URL"]).get(f"lifecycle:{marker}") == marker.encode()
    cluster = cassandra_cluster_from_env(stack_env)
    assert cluster.connect().execute("SELECT marker FROM lifecycle.marker WHERE marker = %s", (marker,)).one()
    cluster.shutdown()
    consumer = Consumer({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"], "group.id": f"lc-{marker}",
                         "auto.offset.reset": "earliest"})
    # Assigned, not subscribed: reading must not wait for the group coordinator to reload.
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = set()
    for _ in range(60):
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            seen.add(msg.value().decode())
            if marker in seen:
                break
    consumer.close()
    assert marker in seen
