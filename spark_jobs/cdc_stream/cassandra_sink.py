"""Cassandra sink: the history, the truth.

Every write carries ``USING TIMESTAMP <position>`` (the change's source LSN), so Cassandra's
last-write-wins resolves by source order, not by arrival order: a replayed older change can
never overwrite a newer one, and a delete's tombstone shadows every older insert or update,
whenever they arrive. Replays and duplicates are therefore harmless.

All writes to these tables must use source positions as timestamps: a write stamped with the
wall clock (microseconds since 1970, far larger than any LSN) would win over every later change.

Executors write partitions with prepared statements and ``execute_concurrent``; each Python
process keeps one Cluster/Session per contact point, created lazily and reused across tasks
and micro-batches.
"""
from __future__ import annotations

import atexit
import itertools
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from cassandra import ConsistencyLevel, InvalidRequest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.concurrent import execute_concurrent
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdc_platform import names

DELETE = "d"
# Cassandra >= 4.0 speaks protocol v5; pinning it avoids a negotiation round trip (and its warnings).
PROTOCOL_VERSION = 5
CHUNK_ROWS = 500
CONCURRENCY = 32
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class CassandraTarget:
    """Where to write; small and picklable, so it travels to executors inside the task closure."""
    host: str
    port: int
    keyspace: str = names.CASSANDRA_KEYSPACE
    events_table: str = names.CASSANDRA_EVENTS_TABLE
    content_table: str = names.CASSANDRA_CONTENT_TABLE

    def __post_init__(self) -> None:
        for name in (self.keyspace, self.events_table, self.content_table):
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"not a plain CQL identifier: {name!r}")

    @classmethod
    def from_settings(cls, settings) -> "CassandraTarget":
        return cls(settings.cassandra_host, settings.cassandra_port, settings.cassandra_keyspace)


_sessions: dict[tuple[str, int], Any] = {}
_prepared: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def get_session(host: str, port: int):
    """This process's session for ``host:port``; connects on first use, then reuses it."""
    with _lock:
        session = _sessions.get((host, port))
        if session is None:
            profile = ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                request_timeout=30,
            )
            cluster = Cluster([host], port=port, protocol_version=PROTOCOL_VERSION,
                              execution_profiles={EXEC_PROFILE_DEFAULT: profile})
            session = cluster.connect()
            atexit.register(cluster.shutdown)
            _sessions[(host, port)] = session
        return session


def _prepare(session, cql: str):
    key = (id(session), cql)
    with _lock:
        statement = _prepared.get(key)
    if statement is None:
        try:
            statement = session.prepare(cql)
        except InvalidRequest as exc:
            raise RuntimeError(f"cannot prepare {cql!r}: {exc}. Is the Cassandra schema provisioned "
                               "(include/cql/engagement_schema.cql)?") from exc
        with _lock:
            _prepared[key] = statement
    return statement


EVENT_COLUMNS = ("id", "content_id", "user_id", "event_type", "event_ts", "duration_ms", "device",
                 "raw_payload", "engagement_pct", "source_lsn", "source_op", "ingested_at")
CONTENT_COLUMNS = ("id", "slug", "title", "content_type", "length_seconds", "publish_ts", "source_lsn")


def _upsert_cql(keyspace: str, table: str, columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO {keyspace}.{table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) USING TIMESTAMP ?")


def _delete_cql(keyspace: str, table: str) -> str:
    return f"DELETE FROM {keyspace}.{table} USING TIMESTAMP ? WHERE id = ?"


def _uuid(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


def event_params(row: dict, ingested_at: datetime) -> tuple[bool, tuple]:
    """(is_delete, bind values) for one change; timestamps arrive as epoch millis."""
    position = row["position"]
    if row["op"] == DELETE:
        return True, (position, row["id"])
    return False, (
        row["id"], _uuid(row["content_id"]), _uuid(row["user_id"]), row["event_type"], row["event_ts_ms"],
        row["duration_ms"], row["device"], row["raw_payload"], row["engagement_pct"], position, row["op"],
        ingested_at, position,
    )


def content_params(row: dict) -> tuple[bool, tuple]:
    position = row["position"]
    if row["op"] == DELETE:
        return True, (position, _uuid(row["id"]))
    return False, (
        _uuid(row["id"]), row["slug"], row["title"], row["content_type"], row["length_seconds"],
        row["publish_ts_ms"], position, position,
    )


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _write_rows(rows: Iterable, target: CassandraTarget, table: str, columns: tuple[str, ...], to_params) -> int:
    session = get_session(target.host, target.port)
    upsert = _prepare(session, _upsert_cql(target.keyspace, table, columns))
    delete = _prepare(session, _delete_cql(target.keyspace, table))
    written = 0
    for chunk in _chunks(rows, CHUNK_ROWS):
        statements = []
        # ingested_at is when the row reached Cassandra: stamped per chunk, not per partition.
        ingested_at = datetime.now(timezone.utc)
        for row in chunk:
            is_delete, params = to_params(row.asDict(), ingested_at)
            statements.append((delete if is_delete else upsert, params))
        # Order inside a chunk does not matter: the write timestamps decide which change wins.
        execute_concurrent(session, statements, concurrency=CONCURRENCY, raise_on_first_error=True)
        written += len(statements)
    return written


def _write_event_partition(rows: Iterable, target: CassandraTarget) -> None:
    _write_rows(rows, target, target.events_table, EVENT_COLUMNS, event_params)


def _write_content_partition(rows: Iterable, target: CassandraTarget) -> None:
    _write_rows(rows, target, target.content_table, CONTENT_COLUMNS, lambda row, _ingested_at: content_params(row))


def write_changes(changes: DataFrame, target: CassandraTarget) -> None:
    """Apply normalized changes (schemas.CHANGE) to the events table."""
    # Timestamps leave Spark as epoch millis: Python datetimes from Spark are naive local time.
    rows = changes.select(
        "id", "op", "position", "content_id", "user_id", "event_type",
        F.unix_millis(F.col("event_ts")).alias("event_ts_ms"),
        "duration_ms", "device", "raw_payload", "engagement_pct",
    )
    rows.foreachPartition(lambda partition: _write_event_partition(partition, target))


def write_content(content_changes: DataFrame, target: CassandraTarget) -> None:
    """Apply content changes (schemas.CONTENT_CHANGE) to the content table."""
    rows = content_changes.select(
        "id", "op", "position", "slug", "title", "content_type", "length_seconds",
        F.unix_millis(F.col("publish_ts")).alias("publish_ts_ms"),
    )
    rows.foreachPartition(lambda partition: _write_content_partition(partition, target))


def write_batch(changes: DataFrame, batch_id: int, settings) -> None:
    """The sink interface shared with the Redis and REST sinks."""
    write_changes(changes, CassandraTarget.from_settings(settings))


def write_content_batch(content_changes: DataFrame, batch_id: int, settings) -> None:
    """Content changes (schemas.CONTENT_CHANGE): only this sink keeps the content table."""
    write_content(content_changes, CassandraTarget.from_settings(settings))
