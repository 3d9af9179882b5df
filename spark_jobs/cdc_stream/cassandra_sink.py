"""Cassandra sink: the history, the truth.

Every write carries ``USING TIMESTAMP <position>`` (the change's source LSN), so Cassandra's
last-write-wins resolves by source order, not by arrival order: a replayed older change can
never overwrite a newer one, and a delete's tombstone shadows every older insert or update,
whenever they arrive. Replays and duplicates are therefore harmless.

All writes to these tables must use source positions as timestamps: a write stamped with the
wall clock (microseconds since 1970, far larger than any LSN) would win over every later change.

Executors write partitions with prepared statements and ``execute_concurrent``; each Python
process keeps one Cluster/Session per contact point, login and consistency level, created lazily
and reused across tasks and micro-batches. The Cluster comes from the library's one builder
(``cdc_platform.cassandra_cluster``), with the driver settings Airflow's connections carry too:
token-aware routing, protocol v5.
"""
from __future__ import annotations

import atexit
import functools
import itertools
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from cassandra import InvalidRequest
from cassandra.concurrent import execute_concurrent
from pyspark.sql import DataFrame

from cdc_platform import names
from cdc_platform.cassandra_cluster import cassandra_cluster
from cdc_platform.cluster import DEFAULT_CASSANDRA_CONSISTENCY
from cdc_stream import change_log

DELETE = "d"
# Its query reads the content changes too: only this sink keeps the content table.
READS_CONTENT = True
# Longer than the tools' default (cassandra_cluster.REQUEST_TIMEOUT_S): CONCURRENCY writes in
# flight at once queue on the node, and a timed-out write fails the Spark task.
REQUEST_TIMEOUT_S = 30
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
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    consistency: str = DEFAULT_CASSANDRA_CONSISTENCY

    def __post_init__(self) -> None:
        for name in (self.keyspace, self.events_table, self.content_table):
            if not _IDENTIFIER.fullmatch(name):
                raise ValueError(f"not a plain CQL identifier: {name!r}")

    @classmethod
    def from_settings(cls, settings) -> "CassandraTarget":
        return cls(settings.cassandra_host, settings.cassandra_port, settings.cassandra_keyspace,
                   username=settings.cassandra_user, password=settings.cassandra_password,
                   consistency=settings.cassandra_consistency)


_sessions: dict[tuple[str, int, str | None, str], Any] = {}
_prepared: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


def get_session(host: str, port: int, username: str | None = None, password: str | None = None,
                consistency: str = DEFAULT_CASSANDRA_CONSISTENCY):
    """This process's session for ``host:port`` (as ``username``); connects on first use, then reuses it."""
    with _lock:
        session = _sessions.get((host, port, username, consistency))
        if session is None:
            cluster = cassandra_cluster(host, port, username, password, consistency=consistency,
                                        request_timeout=REQUEST_TIMEOUT_S)
            session = cluster.connect()
            atexit.register(cluster.shutdown)
            _sessions[(host, port, username, consistency)] = session
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


def _millis(micros: int | None) -> int | None:
    return None if micros is None else micros // 1000


def event_params(change: dict, ingested_at: datetime) -> tuple[bool, tuple]:
    """(is_delete, bind values) for one decoded change (timestamps in epoch micros)."""
    position = change["position"]
    if change["op"] == DELETE:
        return True, (position, change["id"])
    return False, (
        change["id"], _uuid(change["content_id"]), _uuid(change["user_id"]), change["event_type"],
        _millis(change["event_ts"]), change["duration_ms"], change["device"], change["raw_payload"],
        change["engagement_pct"], position, change["op"], ingested_at, position,
    )


def content_params(change: dict) -> tuple[bool, tuple]:
    position = change["position"]
    if change["op"] == DELETE:
        return True, (position, _uuid(change["id"]))
    return False, (
        _uuid(change["id"]), change["slug"], change["title"], change["content_type"], change["length_seconds"],
        _millis(change["publish_ts"]), position, position,
    )


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@dataclass(frozen=True)
class CassandraSinkStats:
    events: int = 0
    content: int = 0

    def __add__(self, other: "CassandraSinkStats") -> "CassandraSinkStats":
        return CassandraSinkStats(self.events + other.events, self.content + other.content)


def write_partition(records: Iterable, target: CassandraTarget, content_topic: str) -> Iterator[CassandraSinkStats]:
    """Apply one partition of normalized records (topic, value) to the events and content tables."""
    session = get_session(target.host, target.port, target.username, target.password, target.consistency)
    statements_for = {
        False: (_prepare(session, _upsert_cql(target.keyspace, target.events_table, EVENT_COLUMNS)),
                _prepare(session, _delete_cql(target.keyspace, target.events_table))),
        True: (_prepare(session, _upsert_cql(target.keyspace, target.content_table, CONTENT_COLUMNS)),
               _prepare(session, _delete_cql(target.keyspace, target.content_table))),
    }
    counts = {False: 0, True: 0}
    for chunk in _chunks(records, CHUNK_ROWS):
        statements = []
        # ingested_at is when the row reached Cassandra: stamped per chunk, not per partition.
        ingested_at = datetime.now(timezone.utc)
        for topic, value in chunk:
            is_content = topic == content_topic
            change = change_log.decode(value)
            is_delete, params = content_params(change) if is_content else event_params(change, ingested_at)
            upsert, delete = statements_for[is_content]
            statements.append((delete if is_delete else upsert, params))
            counts[is_content] += 1
        # Order inside a chunk does not matter: the write timestamps decide which change wins.
        execute_concurrent(session, statements, concurrency=CONCURRENCY, raise_on_first_error=True)
    yield CassandraSinkStats(events=counts[False], content=counts[True])


def write_records(records: DataFrame, target: CassandraTarget, content_topic: str) -> CassandraSinkStats:
    """Apply normalized records (topic, value: change_log) to the events and content tables."""
    run = functools.partial(write_partition, target=target, content_topic=content_topic)
    return sum(records.select("topic", "value").rdd.mapPartitions(run).collect(), CassandraSinkStats())


def write_batch(records: DataFrame, batch_id: int, settings) -> CassandraSinkStats:
    """The sink interface shared with the Redis and REST sinks."""
    return write_records(records, CassandraTarget.from_settings(settings), settings.content_changes_topic)
