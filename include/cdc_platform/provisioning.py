"""Idempotent provisioning of the pipeline: each step can run any number of times.

The functions take ready clients or plain connection details; the ``cdc_provision``
DAG hands them what Airflow connections provide, tests and the demo what
``.stack/env`` provides.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cdc_platform import names, semantics
from cdc_platform.cluster import ClusterSettings
from cdc_platform.connections import KAFKA_CONNECT_CONN_ID
from cdc_platform.connect_rest_client import KafkaConnectClient
from cdc_platform.health import store as health_store
from cdc_platform.kafka_clients import KafkaSettings, client_config

log = logging.getLogger(__name__)

INCLUDE_DIR = Path(__file__).resolve().parents[1]
PG_SCHEMA_FILE = INCLUDE_DIR / "sql" / "engagement_schema.sql"
CQL_SCHEMA_FILE = INCLUDE_DIR / "cql" / "engagement_schema.cql"
CANARY_TOPIC = f"{names.TOPIC_PREFIX}.public.{names.PG_HEARTBEAT_TABLE}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    # None: the cluster's event partitions (cluster.ClusterSettings), which set how many
    # tasks read the topic in parallel; 1 where one partition is plenty.
    partitions: int | None
    config: dict[str, str]


WEEK_MS = str(semantics.CHANGE_REPLAY_HORIZON_MS)
# Every reprocess round rewrites what it could not deliver, so the DLQ holds history; a month
# is ample for an entry that is parked (kept forever) after a handful of rounds.
MONTH_MS = str(30 * 24 * 3600 * 1000)
TOPICS = (
    # Keyed by primary key: per-row order holds within a partition.
    TopicSpec(names.EVENTS_TOPIC, None, {"retention.ms": WEEK_MS, "cleanup.policy": "delete"}),
    TopicSpec(names.CONTENT_TOPIC, 1, {"retention.ms": "-1", "cleanup.policy": "delete"}),
    TopicSpec(CANARY_TOPIC, 1, {"retention.ms": str(24 * 3600 * 1000), "cleanup.policy": "delete"}),
    TopicSpec(names.DLQ_TOPIC, None, {"retention.ms": MONTH_MS, "cleanup.policy": "delete"}),
    TopicSpec(names.PARKED_TOPIC, 1, {"retention.ms": "-1", "cleanup.policy": "delete"}),
    TopicSpec(names.QUARANTINE_TOPIC, 1, {"retention.ms": "-1", "cleanup.policy": "delete"}),
)


def stream_topics(event_changes: str = names.EVENT_CHANGES_TOPIC, content_changes: str = names.CONTENT_CHANGES_TOPIC,
                  pending: str = names.PENDING_TOPIC, repairs: str = names.REPAIR_CHANGES_TOPIC) -> tuple[TopicSpec, ...]:
    """The topics the stream's core query writes (and the repairs topic it reads); the stream
    creates them itself when missing."""
    return (
        TopicSpec(repairs, 1, {"retention.ms": WEEK_MS, "cleanup.policy": "delete"}),
        # Keyed by row id, as the source topic, so a sink query reads each row's changes in order.
        TopicSpec(event_changes, None, {"retention.ms": WEEK_MS, "cleanup.policy": "delete"}),
        TopicSpec(content_changes, 1, {"retention.ms": "-1", "cleanup.policy": "delete"}),
        # One record per waiting event, removed by a tombstone once it is resolved: compaction
        # keeps exactly the events still waiting, which is what a restarted stream reloads.
        TopicSpec(pending, 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                               "segment.ms": str(3600 * 1000)}),
    )


TOPICS = TOPICS + stream_topics()


def sql_statements(text: str) -> list[str]:
    """Split a schema file into statements (no procedural bodies in our files)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def apply_postgres_schema(conn) -> dict[str, bool]:
    """Tables, REPLICA IDENTITY FULL, heartbeat row, publication and the health history's
    tables. Returns what was created.

    The replication slot is not created here: Debezium creates it when first registered and
    takes its initial snapshot from the snapshot the slot exports, so snapshot and stream meet
    at one position. A slot made earlier makes Debezium snapshot at a later position instead,
    and a transaction open across that gap reaches no sink (docs/snapshot-ordering.md).
    """
    created = {"publication": False}
    conn.autocommit = True
    with conn.cursor() as cur:
        for statement in sql_statements(PG_SCHEMA_FILE.read_text()):
            cur.execute(statement)
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (names.PUBLICATION,))
        tables = ", ".join((names.PG_CONTENT_TABLE, names.PG_EVENTS_TABLE, names.PG_HEARTBEAT_TABLE))
        if not cur.fetchone():
            cur.execute(f"CREATE PUBLICATION {names.PUBLICATION} FOR TABLE {tables}")
            created["publication"] = True
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (names.PG_CDC_ROLE,))
        if cur.fetchone():
            # Debezium reads the captured tables (snapshots) and beats the heartbeat row; nothing else.
            cur.execute(f'GRANT USAGE ON SCHEMA public TO "{names.PG_CDC_ROLE}"')
            cur.execute(f'GRANT SELECT ON {tables} TO "{names.PG_CDC_ROLE}"')
            cur.execute(f'GRANT UPDATE ON {names.PG_HEARTBEAT_TABLE} TO "{names.PG_CDC_ROLE}"')
        else:
            log.warning("role %s does not exist: create it (LOGIN REPLICATION) for the connector", names.PG_CDC_ROLE)
        cur.execute("SELECT plugin FROM pg_replication_slots WHERE slot_name = %s", (names.REPLICATION_SLOT,))
        row = cur.fetchone()
        if row is not None and row[0] != "pgoutput":
            raise RuntimeError(f"slot {names.REPLICATION_SLOT} uses plugin {row[0]}, expected pgoutput; "
                               "dropping it loses changes, so do it deliberately")
    health_store.ensure_schema(conn)
    return created


def new_topic_settings(spec: TopicSpec, settings: ClusterSettings) -> dict:
    """Partitions, replication and config of a topic to create, under the cluster's settings."""
    return {"num_partitions": spec.partitions or settings.kafka_event_partitions,
            "replication_factor": settings.kafka_replication_factor,
            "config": {"max.message.bytes": str(semantics.MAX_MESSAGE_BYTES), **settings.topic_config(), **spec.config}}


def create_topics(bootstrap: KafkaSettings, topics: tuple[TopicSpec, ...] = TOPICS, timeout: float = 30,
                  settings: ClusterSettings | None = None) -> list[str]:
    """Create missing topics; existing ones are left alone. Returns the names created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    settings = settings or ClusterSettings.from_env()

    admin = AdminClient(client_config(bootstrap, {"log_level": 0}))
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t.name, **new_topic_settings(t, settings)) for t in missing]
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout)
            created.append(name)
        except Exception as exc:  # noqa: BLE001 - a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created


def cassandra_statements(settings: ClusterSettings) -> list[str]:
    """The schema file's statements, the keyspace replicated as the cluster's settings say."""
    statements = sql_statements(CQL_SCHEMA_FILE.read_text())
    return [re.sub(r"replication = \{[^}]*\}", f"replication = {settings.cql_replication()}", s)
            if s.upper().startswith("CREATE KEYSPACE") else s for s in statements]


def apply_cassandra_schema(session, sink_role: str = names.CASSANDRA_SINK_ROLE,
                           settings: ClusterSettings | None = None) -> int:
    """The keyspace and tables; the sink's role may then read and write in that keyspace, and
    nothing else. Without authentication (a cluster that has none) there is nothing to grant.
    An existing keyspace keeps its replication: changing it on a live cluster needs a repair."""
    statements = cassandra_statements(settings or ClusterSettings.from_env())
    for statement in statements:
        session.execute(statement)
    return len(statements) + grant_sink_role(session, names.CASSANDRA_KEYSPACE, sink_role)


def grant_sink_role(session, keyspace: str, role: str = names.CASSANDRA_SINK_ROLE) -> int:
    """Let ``role`` read and write in ``keyspace``, and nothing else; the statements run (0 when
    the role does not exist, as on a cluster without authentication)."""
    if not cassandra_role_exists(session, role):
        return 0
    for permission in ("SELECT", "MODIFY"):
        session.execute(f"GRANT {permission} ON KEYSPACE {keyspace} TO {role}")
    return 2


def cassandra_role_exists(session, role: str) -> bool:
    from cassandra import InvalidRequest, Unauthorized
    from cassandra.protocol import SyntaxException

    try:
        return any(row.role == role for row in session.execute("LIST ROLES"))
    except (Unauthorized, InvalidRequest, SyntaxException):  # anonymous: authentication is off
        return False


def check_redis(client) -> dict[str, str]:
    if not client.ping():
        raise RuntimeError("Redis did not answer PING")
    policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    if policy != "noeviction":
        raise RuntimeError(f"Redis maxmemory-policy is {policy}; aggregates need noeviction")
    return {"version": client.info("server")["redis_version"], "maxmemory-policy": policy}


def register_connector(connect: KafkaConnectClient, config: dict[str, str], timeout: float = 180) -> dict:
    """PUT the config (create or update) and wait for the connector and its task to run."""
    before = connect.get_config(names.CONNECTOR_NAME)
    if before is not None:
        before.pop("name", None)
    created = connect.put_config(names.CONNECTOR_NAME, config)
    state = connect.wait_running(names.CONNECTOR_NAME, timeout=timeout)
    return {"created": created, "changed": before != config, "connector": state.connector, "tasks": list(state.tasks)}


def run_canary(pg_conn, bootstrap: str, timeout: float = 120) -> float:
    """Write a change to the heartbeat table and wait until Debezium has put it on Kafka.

    Returns the seconds from commit to the message being readable.
    """
    from confluent_kafka import Consumer, TopicPartition

    canary_id = int(uuid.uuid4().int % 1_000_000_000) + 2  # id 1 is the heartbeat row
    consumer = Consumer(client_config(bootstrap, {"group.id": f"canary-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "log_level": 0}))
    try:
        partitions = consumer.list_topics(CANARY_TOPIC, timeout=30).topics[CANARY_TOPIC].partitions
        assignment = []
        for p in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(CANARY_TOPIC, p), timeout=10)
            assignment.append(TopicPartition(CANARY_TOPIC, p, high))
        consumer.assign(assignment)
        with pg_conn.cursor() as cur:
            cur.execute(f"INSERT INTO {names.PG_HEARTBEAT_TABLE} (id, beat_ts) VALUES (%s, now())", (canary_id,))
            cur.execute(f"DELETE FROM {names.PG_HEARTBEAT_TABLE} WHERE id = %s", (canary_id,))
        pg_conn.commit()
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            msg = consumer.poll(1.0)
            if msg is None or msg.error() or msg.key() is None:
                continue
            if json.loads(msg.key()).get("id") == canary_id:
                return time.monotonic() - started
        raise TimeoutError(f"canary row {canary_id} did not reach {CANARY_TOPIC} within {timeout:.0f}s")
    finally:
        consumer.close()


def connector_config_from_env(env) -> dict[str, str]:
    from cdc_platform.connector_config import render

    connect_conn = json.loads(env[f"AIRFLOW_CONN_{KAFKA_CONNECT_CONN_ID.upper()}"])
    extra = connect_conn["extra"]
    return render(env["PG_HOST"], int(env["PG_PORT"]), extra.get("database_user") or names.PG_CDC_ROLE,
                  extra["database_password_ref"])


def provision_from_env(env) -> dict:
    """Every step in order, with clients built from ``.stack/env`` values (demo, tests)."""
    import psycopg2
    from cdc_platform import redis_client

    from cdc_platform.cassandra_cluster import cassandra_cluster_from_env

    report: dict = {}
    conn = psycopg2.connect(env["PG_DSN"])
    try:
        report["postgres"] = apply_postgres_schema(conn)
    finally:
        conn.close()
    report["topics_created"] = create_topics(env["KAFKA_BOOTSTRAP"])
    cluster = cassandra_cluster_from_env(env)
    try:
        report["cassandra_statements"] = apply_cassandra_schema(cluster.connect())
    finally:
        cluster.shutdown()
    report["redis"] = check_redis(redis_client.connect(env["REDIS_URL"], decode_responses=True))
    report["connector"] = register_connector(KafkaConnectClient(env["CONNECT_URL"]), connector_config_from_env(env))
    conn = psycopg2.connect(env["PG_DSN"])
    try:
        report["canary_seconds"] = round(run_canary(conn, env["KAFKA_BOOTSTRAP"]), 3)
    finally:
        conn.close()
    return report
