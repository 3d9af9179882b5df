"""Clients for the platform's services, built from Airflow connections.

Each function resolves its connection when called (task run time), never at DAG parse time.
"""
from __future__ import annotations

from cdc_platform import connections as conn_ids
from cdc_platform import redis_client as redis_client_module


def kafka_bootstrap(conn_id: str = conn_ids.KAFKA_CONN_ID) -> str:
    from airflow.sdk import BaseHook

    extra = BaseHook.get_connection(conn_id).extra_dejson
    bootstrap = extra.get("bootstrap.servers")
    if not bootstrap:
        raise ValueError(f"connection {conn_id} has no extra['bootstrap.servers']")
    return bootstrap


def postgres_conn(conn_id: str = conn_ids.POSTGRES_CONN_ID):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id).get_conn()


def postgres_connection(conn_id: str = conn_ids.POSTGRES_CONN_ID):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def cassandra_session(conn_id: str = conn_ids.CASSANDRA_CONN_ID):
    """A session on the connection's host/port (protocol v5), without a keyspace so DDL can create one."""
    from airflow.sdk import BaseHook

    from cdc_platform.cassandra_cluster import cassandra_cluster

    conn = BaseHook.get_connection(conn_id)
    cluster = cassandra_cluster(conn.host, conn.port or 9042, conn.login, conn.password)
    return cluster, cluster.connect()


def credentials(conn_id: str) -> tuple[str | None, str | None]:
    """The connection's login and password (None when it has none)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return conn.login or None, conn.password or None


def cassandra_endpoint(conn_id: str = conn_ids.CASSANDRA_CONN_ID) -> tuple[str, int]:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return conn.host, int(conn.port or 9042)


def redis_client(conn_id: str = conn_ids.REDIS_CONN_ID):
    """The provider's client; through the Sentinels when the connection names a master (the
    provider's hook connects to one server only)."""
    url = redis_url(conn_id)
    if url.startswith(f"{redis_client_module.SENTINEL_SCHEME}://"):
        return redis_client_module.connect(url)
    from airflow.providers.redis.hooks.redis import RedisHook

    return RedisHook(redis_conn_id=conn_id).get_conn()


def redis_url(conn_id: str = conn_ids.REDIS_CONN_ID) -> str:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return redis_url_of(conn.host, conn.port, conn.password, conn.extra_dejson or {})


def redis_url_of(host: str, port: int | None, password: str | None, extra: dict) -> str:
    """A URL for ``redis_client.connect``: the password as auth, extra ``db``, extra ``ssl``
    for TLS (rediss), and extra ``sentinel_master`` to reach that master through the Sentinels
    listed in ``host`` (``s1:26379,s2:26379``; ``port`` is the default Sentinel port)."""
    from urllib.parse import quote

    auth = f":{quote(password, safe='')}@" if password else ""
    db = extra.get("db", 0)
    if extra.get("sentinel_master"):
        sentinels = ",".join(h if ":" in h else f"{h}:{port or 26379}" for h in host.split(","))
        return f"{redis_client_module.SENTINEL_SCHEME}://{auth}{sentinels}/{extra['sentinel_master']}/{db}"
    scheme = "rediss" if str(extra.get("ssl", "")).lower() in ("true", "1") else "redis"
    return f"{scheme}://{auth}{host}:{port or 6379}/{db}"


def http_base_url(conn_id: str) -> tuple[str, str | None]:
    """(base URL, password-or-token) of an http connection."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.schema or 'http'}://{conn.host}{port}", conn.password
