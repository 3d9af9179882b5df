"""Cassandra sessions for DAG tasks, from Airflow connections, through the provider's
CassandraHook. The driver settings it reads from the connection's extras are defined once, in
``cdc_platform.cassandra_cluster.CASSANDRA_DRIVER_EXTRA``, which the stack's connections carry;
code without Airflow builds its Cluster from the same definition there (``cassandra_cluster``)."""
from __future__ import annotations

from cdc_platform.cassandra_cluster import REQUEST_TIMEOUT_S
from cdc_platform.connections import CASSANDRA_CONN_ID


def cassandra_session(conn_id: str = CASSANDRA_CONN_ID):
    """(cluster, session) on the connection: hosts, port, login, and the extras the provider
    reads (``protocol_version``, ``load_balancing_policy``, ``ssl_options``); no keyspace unless
    the connection names one, so DDL can create it. The caller shuts the cluster down."""
    from airflow.providers.apache.cassandra.hooks.cassandra import CassandraHook

    hook = CassandraHook(cassandra_conn_id=conn_id)
    session = hook.get_conn()
    session.default_timeout = REQUEST_TIMEOUT_S
    return hook.get_cluster(), session


def cassandra_endpoint_and_credentials(conn_id: str) -> tuple[str, int, str | None, str | None]:
    """Host, port, login and password, for the Spark job (its sink builds its sessions with
    ``cdc_platform.cassandra_cluster.cassandra_cluster``)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return conn.host, int(conn.port or 9042), conn.login or None, conn.password or None
