"""Cassandra's roles, the same in the local stack (after the node is ready) and in the compose
deployment (its ``cassandra-init`` service): a generated admin replaces the well-known default
superuser, and the stream's sink gets its own login role. Its permissions on the keyspace are
granted by provisioning, which creates the keyspace."""
from __future__ import annotations

import argparse
import os
import time

from cdc_platform import names

DEFAULT_SUPERUSER = ("cassandra", "cassandra")


def ensure_roles(host: str, port: int, admin_password: str, sink_password: str) -> None:
    from cassandra.cluster import NoHostAvailable

    from cdc_platform.cassandra_cluster import cassandra_cluster

    admin = (names.CASSANDRA_ADMIN_ROLE, admin_password)

    def connect(credentials: tuple[str, str]):
        cluster = cassandra_cluster(host, port, *credentials, connect_timeout=3, control_connection_timeout=3)
        try:
            return cluster, cluster.connect()
        except Exception:
            cluster.shutdown()
            raise

    try:
        cluster, session = connect(admin)
    except NoHostAvailable:
        cluster, session = connect(DEFAULT_SUPERUSER)
        try:
            session.execute(f"CREATE ROLE IF NOT EXISTS {names.CASSANDRA_ADMIN_ROLE} "
                            "WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = %s", (admin_password,))
        finally:
            cluster.shutdown()
        cluster, session = connect(admin)
    try:
        session.execute(f"DROP ROLE IF EXISTS {DEFAULT_SUPERUSER[0]}")
        session.execute(f"CREATE ROLE IF NOT EXISTS {names.CASSANDRA_SINK_ROLE} WITH LOGIN = true AND PASSWORD = %s",
                        (sink_password,))
        session.execute(f"ALTER ROLE {names.CASSANDRA_SINK_ROLE} WITH PASSWORD = %s", (sink_password,))
    finally:
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Passwords come from the environment (CASSANDRA_ADMIN_PASSWORD, CASSANDRA_SINK_PASSWORD),
    never from the command line."""
    parser = argparse.ArgumentParser(description="Create Cassandra's admin and sink roles.")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=9042)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for CQL")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            ensure_roles(args.host, args.port, os.environ["CASSANDRA_ADMIN_PASSWORD"],
                         os.environ["CASSANDRA_SINK_PASSWORD"])
            print(f"roles {names.CASSANDRA_ADMIN_ROLE} and {names.CASSANDRA_SINK_ROLE} in place on {args.host}")
            return 0
        except Exception as exc:  # noqa: BLE001 - Cassandra takes a minute to answer CQL
            if time.monotonic() > deadline:
                raise
            print(f"waiting for Cassandra at {args.host}:{args.port}: {type(exc).__name__}")
            time.sleep(5)


if __name__ == "__main__":
    raise SystemExit(main())
