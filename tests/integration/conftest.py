"""Clients for the real services, one per test session."""
from __future__ import annotations

import os

import psycopg2
import pytest


@pytest.fixture(scope="session")
def pg_conn(stack_env):
    conn = psycopg2.connect(stack_env["PG_DSN"])
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def redis_client(stack_env):
    import redis

    client = redis.Redis.from_url(stack_env["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def cassandra_session(stack_env):
    from cdc_platform.cassandra_cluster import cassandra_cluster_from_env

    cluster = cassandra_cluster_from_env(stack_env)
    session = cluster.connect()
    yield session
    cluster.shutdown()


@pytest.fixture
def airflow_connections(stack_env, monkeypatch):
    """Expose the stack's AIRFLOW_CONN_* so hooks resolve connections exactly as tasks do."""
    for key, value in stack_env.items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_HOME", stack_env["AIRFLOW_HOME"])
    yield {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}
