"""One quick, real round trip per service: proves each part of the stack is up and wired."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Callable, Mapping


@dataclass(frozen=True)
class CheckResult:
    service: str
    ok: bool
    detail: str
    seconds: float


def _postgres(env: Mapping[str, str]) -> str:
    import psycopg2

    with psycopg2.connect(env["PG_DSN"], connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        wal_level = cur.fetchone()[0]
        cur.execute("SELECT rolreplication FROM pg_roles WHERE rolname = current_user")
        replication = cur.fetchone()[0]
    if wal_level != "logical" or not replication:
        raise RuntimeError(f"wal_level={wal_level}, replication role={replication}")
    return "wal_level=logical, replication role ok"


def _redis(env: Mapping[str, str]) -> str:
    from cdc_platform import redis_client

    client = redis_client.connect(env["REDIS_URL"], socket_timeout=5)
    key = f"smoke:{uuid.uuid4().hex}"
    client.set(key, "1", ex=60)
    value = client.get(key)
    client.delete(key)
    if value != b"1":
        raise RuntimeError(f"read back {value!r}")
    return f"redis {client.info('server')['redis_version']}: set/get ok"


def _kafka(env: Mapping[str, str]) -> str:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "log_level": 0}).list_topics(timeout=10)
    return f"{len(metadata.brokers)} broker(s) (KRaft), {len(metadata.topics)} topics"


def _connect(env: Mapping[str, str]) -> str:
    from cdc_platform.connect_rest_client import KafkaConnectClient

    plugins = KafkaConnectClient(env["CONNECT_URL"]).plugins()
    debezium = "io.debezium.connector.postgresql.PostgresConnector"
    if debezium not in plugins:
        raise RuntimeError(f"Debezium PostgreSQL plugin not loaded; plugins: {plugins}")
    return "Debezium PostgresConnector plugin loaded"


def _cassandra(env: Mapping[str, str]) -> str:
    from cdc_platform.cassandra_cluster import cassandra_cluster_from_env

    cluster = cassandra_cluster_from_env(env, connect_timeout=10)
    try:
        row = cluster.connect().execute("SELECT release_version FROM system.local").one()
        return f"Cassandra {row.release_version}"
    finally:
        cluster.shutdown()


def _airflow(env: Mapping[str, str]) -> str:
    import requests

    health = requests.get(f"{env['AIRFLOW_URL']}/api/v2/monitor/health", timeout=10).json()
    bad = {k: v["status"] for k, v in health.items() if v.get("status") != "healthy"}
    if bad:
        raise RuntimeError(f"unhealthy: {bad}")
    return "metadatabase, scheduler, dag-processor, triggerer healthy"


CHECKS: dict[str, Callable[[Mapping[str, str]], str]] = {
    "postgres": _postgres,
    "redis": _redis,
    "kafka": _kafka,
    "kafka-connect": _connect,
    "cassandra": _cassandra,
    "airflow": _airflow,
}


def run_checks(env: Mapping[str, str], only: list[str] | None = None) -> list[CheckResult]:
    results = []
    for name, check in CHECKS.items():
        if only and name not in only:
            continue
        start = time.monotonic()
        try:
            detail, ok = check(env), True
        except Exception as exc:  # noqa: BLE001 - each failure is reported, not raised
            detail, ok = f"{type(exc).__name__}: {exc}", False
        results.append(CheckResult(name, ok, detail, time.monotonic() - start))
    return results


def run_checks_from_environment() -> dict[str, str]:
    """Entry point for the Airflow task: raise on any failure, return details otherwise."""
    import os

    results = run_checks(os.environ)
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError("; ".join(f"{r.service}: {r.detail}" for r in failed))
    return {r.service: r.detail for r in results}
