"""Clients for the real services, one per test session."""
from __future__ import annotations

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
    from cdc_platform.clients import cassandra_cluster_from_env

    cluster = cassandra_cluster_from_env(stack_env)
    session = cluster.connect()
    yield session
    cluster.shutdown()
