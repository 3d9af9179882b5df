"""Cassandra sink: the history, the truth.

Every write carries ``USING TIMESTAMP <position>`` (the change's source LSN), so Cassandra's
last-write-wins resolves by source order, not by arrival order: a replayed older change can
never overwrite a newer one, and a delete's tombstone shadows every older insert or update,
whenever they arrive. Replays and duplicates are therefore harmless.

All writes to these tables must use source positions as timestamps: a write stamped with the
wall clock (microseconds since 1970, far larger than any LSN) would win over every later change.

Executors write prepared statements in unlogged batches grouped by replica, several batches in
flight (``execute_concurrent``); each Python
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
from typing import Any, Iterable, Iterator, Sequence

from cassandra import InvalidRequest
from cassandra.query import BatchStatement, BatchType
from cassandra.concurrent import execute_concurrent
from pyspark.sql import DataFrame

from cdc_platform import names
from cdc_platform.cassandra_cluster import cassandra_cluster
from cdc_platform.cluster import DEFAULT_CASSANDRA_CONSISTENCY
from cdc_stream import change_log

DELETE = "d"
# Its query reads the content changes too: only this sink keeps the content table.
READS_CONTENT = True
# Longer than the tools' default (cassandra_cluster.REQUEST_TIMEOUT_S): BATCH_CONCURRENCY batches in
# flight at once queue on the node, and a timed-out write fails the Spark task.
REQUEST_TIMEOUT_S = 30
# Records decoded and written per round by the catch-up path (write_partition).
CHUNK_ROWS = 5000
# Unlogged batches of BATCH_ROWS statements: from one Python client a batch of 50 costs a tenth
# of the client CPU per row that single-row writes do (0.033 against 0.33 ms, issue 18's
# measurement), and 50 rows of this table stay far below Cassandra's batch size limits; a row
# with a large payload closes its batch early (BATCH_BYTES, under the default 50 KiB fail limit).
BATCH_ROWS = 50
BATCH_BYTES = 48 * 1024
# Batches in flight: 8 x 50 rows keeps the node's 8 write threads busy without queueing past
# the request timeout.
BATCH_CONCURRENCY = 8
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


@dataclass(frozen=True)
class CassandraSinkStats:
    events: int = 0
    content: int = 0
    batches: int = 0

    def __add__(self, other: "CassandraSinkStats") -> "CassandraSinkStats":
        return CassandraSinkStats(self.events + other.events, self.content + other.content,
                                  self.batches + other.batches)


def _param_bytes(params: tuple) -> int:
    """About what a statement's values weigh in a batch (what Cassandra's batch size limits count)."""
    return sum(len(v) if isinstance(v, (str, bytes)) else 16 for v in params if v is not None)


def _batches(session, keyspace: str, statements: list[tuple[Any, tuple]]) -> list[BatchStatement]:
    """Unlogged batches of the bound statements, grouped by the replica that owns each row, so a
    batch goes to one node and its coordinator writes it locally; each statement keeps its own
    ``USING TIMESTAMP``, so a batch changes nothing about which change wins."""
    metadata = session.cluster.metadata
    groups: dict[Any, list] = {}
    for prepared, params in statements:
        bound = prepared.bind(params)
        replicas = metadata.get_replicas(keyspace, bound.routing_key) if bound.routing_key else []
        groups.setdefault(replicas[0] if replicas else None, []).append((bound, _param_bytes(params)))
    batches = []
    for bounds in groups.values():
        batch, size = None, 0
        for bound, weight in bounds:
            if batch is None or len(batch) >= BATCH_ROWS or size + weight > BATCH_BYTES:
                batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=bound.consistency_level)
                batches.append(batch)
                size = 0
            batch.add(bound)
            size += weight
    return batches


def write_changes(changes: Sequence[dict], contents: Sequence[dict], settings) -> CassandraSinkStats:
    """The fan-out's interface (shared with the Redis and REST sinks): decoded event changes and
    content changes (change_log.decode) to the tables ``settings`` (config.SinkSettings) name."""
    return apply_changes(changes, contents, CassandraTarget.from_settings(settings))


def apply_changes(changes: Sequence[dict], contents: Sequence[dict], target: CassandraTarget) -> CassandraSinkStats:
    """Apply decoded event changes and content changes to the events and content tables, in
    unlogged batches, BATCH_CONCURRENCY of them in flight."""
    if not changes and not contents:
        return CassandraSinkStats()
    session = get_session(target.host, target.port, target.username, target.password, target.consistency)
    event_upsert = _prepare(session, _upsert_cql(target.keyspace, target.events_table, EVENT_COLUMNS))
    event_delete = _prepare(session, _delete_cql(target.keyspace, target.events_table))
    content_upsert = _prepare(session, _upsert_cql(target.keyspace, target.content_table, CONTENT_COLUMNS))
    content_delete = _prepare(session, _delete_cql(target.keyspace, target.content_table))
    # ingested_at is when the rows reached Cassandra: stamped once per call.
    ingested_at = datetime.now(timezone.utc)
    statements = []
    for change in changes:
        is_delete, params = event_params(change, ingested_at)
        statements.append((event_delete if is_delete else event_upsert, params))
    for change in contents:
        is_delete, params = content_params(change)
        statements.append((content_delete if is_delete else content_upsert, params))
    batches = _batches(session, target.keyspace, statements)
    # Order does not matter: the write timestamps decide which change wins.
    execute_concurrent(session, [(batch, ()) for batch in batches], concurrency=BATCH_CONCURRENCY,
                       raise_on_first_error=True)
    return CassandraSinkStats(events=len(changes), content=len(contents), batches=len(batches))


def write_partition(records: Iterable, target: CassandraTarget, content_topic: str) -> Iterator[CassandraSinkStats]:
    """Apply one partition of normalized records (topic, value), CHUNK_ROWS at a time."""
    stats = CassandraSinkStats()
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, CHUNK_ROWS)):
        changes, contents = [], []
        for topic, value in chunk:
            (contents if topic == content_topic else changes).append(change_log.decode(value))
        stats += apply_changes(changes, contents, target)
    yield stats


def write_records(records: DataFrame, target: CassandraTarget, content_topic: str) -> CassandraSinkStats:
    """Apply normalized records (topic, value: change_log) to the events and content tables."""
    run = functools.partial(write_partition, target=target, content_topic=content_topic)
    return sum(records.select("topic", "value").rdd.mapPartitions(run).collect(), CassandraSinkStats())


def write_batch(records: DataFrame, batch_id: int, settings) -> CassandraSinkStats:
    """The sink interface shared with the Redis and REST sinks."""
    return write_records(records, CassandraTarget.from_settings(settings), settings.content_changes_topic)
