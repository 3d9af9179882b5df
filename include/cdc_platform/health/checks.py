"""Health numbers of the running pipeline, and the thresholds that turn them into alerts.

Collectors read the real systems; :func:`evaluate` is pure and decides what breaches.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cdc_platform import names
from cdc_platform.kafka_clients import client_config
from cdc_platform.sink_ledger import query_checkpoint

STREAM_QUERIES = names.STREAM_QUERIES


@dataclass(frozen=True)
class Thresholds:
    max_slot_lag_bytes: int = 256 * 2**20
    max_stream_idle_seconds: float = 300.0
    max_sink_lag_messages: int = 50_000
    max_dlq_depth: int = 1_000
    max_parked: int = 0
    max_freshness_seconds: float = 300.0
    # Quarantined records since the previous check, all reasons together.
    max_new_quarantined: int = 1_000
    # An event waits for its content row; a long wait means the content is missing or late.
    max_waiting_seconds: float = 600.0
    # A stream query restarted this many times in a row without a batch in between keeps
    # failing (a sink down, or its Kafka offsets gone: retention ran out before it read).
    max_query_failures: int = field(default=3, metadata={"minimum": 1})


@dataclass
class Metrics:
    connector_state: str | None = None
    connector_tasks: list[str] = field(default_factory=list)
    connector_restarted: list[str] = field(default_factory=list)
    slot_active: bool | None = None
    slot_lag_bytes: int | None = None
    stream_idle_seconds: dict[str, float | None] = field(default_factory=dict)
    sink_lag_messages: dict[str, int | None] = field(default_factory=dict)
    # Age of each query's oldest unapplied change (0 when it has applied everything).
    sink_lag_seconds: dict[str, float | None] = field(default_factory=dict)
    # Messages each query has committed (sum of its checkpoint offsets): two samples give its rate.
    committed_messages: dict[str, int | None] = field(default_factory=dict)
    dlq_depth: int | None = None
    parked_depth: int | None = None
    freshness_seconds: float | None = None
    quarantined_new: dict[str, int] = field(default_factory=dict)
    quarantined_total: dict[str, int] = field(default_factory=dict)
    waiting_for_content: int | None = None
    oldest_waiting_seconds: float | None = None
    redis_state_lost: bool | None = None
    # Captured tables whose columns differ from cdc_platform.source_schema: added, dropped, retyped.
    schema_drift: dict[str, dict] = field(default_factory=dict)
    # Stream queries failing now: failures in a row and the error's first line.
    failing_queries: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Breach:
    check: str
    value: object
    limit: object
    message: str


def evaluate(m: Metrics, t: Thresholds) -> list[Breach]:
    breaches: list[Breach] = []
    if m.connector_state != "RUNNING" or any(s != "RUNNING" for s in m.connector_tasks) or not m.connector_tasks:
        breaches.append(Breach("connector", {"connector": m.connector_state, "tasks": m.connector_tasks}, "RUNNING",
                               f"connector {names.CONNECTOR_NAME} is {m.connector_state} with tasks {m.connector_tasks}"
                               + (f"; restarted: {m.connector_restarted}" if m.connector_restarted else "")))
    if m.slot_active is False:
        breaches.append(Breach("slot_active", False, True, f"replication slot {names.REPLICATION_SLOT} has no consumer"))
    if m.slot_lag_bytes is not None and m.slot_lag_bytes > t.max_slot_lag_bytes:
        breaches.append(Breach("slot_lag_bytes", m.slot_lag_bytes, t.max_slot_lag_bytes,
                               f"replication slot lag {m.slot_lag_bytes} B > {t.max_slot_lag_bytes} B"))
    for query, lag in m.sink_lag_messages.items():
        if lag is None:
            breaches.append(Breach(f"sink_lag.{query}", None, t.max_sink_lag_messages,
                                   f"stream query {query} has no checkpoint: not running or never started"))
        elif lag > t.max_sink_lag_messages:
            breaches.append(Breach(f"sink_lag.{query}", lag, t.max_sink_lag_messages,
                                   f"stream query {query} is {lag} messages behind"))
        idle = m.stream_idle_seconds.get(query)
        # Idle is only a problem while there is work waiting.
        if lag and idle is not None and idle > t.max_stream_idle_seconds:
            breaches.append(Breach(f"stream_idle.{query}", round(idle), t.max_stream_idle_seconds,
                                   f"stream query {query} made no progress for {idle:.0f}s with {lag} waiting"))
    if m.dlq_depth is not None and m.dlq_depth > t.max_dlq_depth:
        breaches.append(Breach("dlq_depth", m.dlq_depth, t.max_dlq_depth, f"DLQ holds {m.dlq_depth} entries"))
    if m.parked_depth is not None and m.parked_depth > t.max_parked:
        breaches.append(Breach("parked_depth", m.parked_depth, t.max_parked,
                               f"{m.parked_depth} DLQ entries are parked and need a person"))
    new_quarantined = sum(m.quarantined_new.values())
    if new_quarantined > t.max_new_quarantined:
        breaches.append(Breach("quarantined_new", dict(m.quarantined_new), t.max_new_quarantined,
                               f"{new_quarantined} records quarantined since the last check: "
                               + ", ".join(f"{r}={n}" for r, n in sorted(m.quarantined_new.items()))))
    if m.oldest_waiting_seconds is not None and m.oldest_waiting_seconds > t.max_waiting_seconds:
        breaches.append(Breach("oldest_waiting_seconds", round(m.oldest_waiting_seconds), t.max_waiting_seconds,
                               f"{m.waiting_for_content} events wait for their content row, the oldest for "
                               f"{m.oldest_waiting_seconds:.0f}s"))
    if m.schema_drift:
        breaches.append(Breach("schema_drift", dict(m.schema_drift), {},
                               "source columns differ from the stream's contract (cdc_platform/source_schema.py): "
                               + "; ".join(f"{table}: {_describe_drift(d)}" for table, d in sorted(m.schema_drift.items()))
                               + ". New columns are not streamed; changes missing a required column are quarantined"))
    if m.redis_state_lost:
        breaches.append(Breach("redis_state_lost", True, False,
                               f"Redis lost its aggregates ({names.REDIS_STATE_MARKER} is missing): the next "
                               "cdc_reconcile run restores them from Cassandra"))
    if m.freshness_seconds is not None and m.freshness_seconds > t.max_freshness_seconds:
        breaches.append(Breach("freshness_seconds", round(m.freshness_seconds), t.max_freshness_seconds,
                               f"oldest unapplied change is {m.freshness_seconds:.0f}s old"))
    failing = {q: f for q, f in m.failing_queries.items() if f.get("failures", 0) >= t.max_query_failures}
    if failing:
        breaches.append(Breach("query_failing", {q: f["failures"] for q, f in failing.items()}, t.max_query_failures,
                               "; ".join(f"stream query {q} failed {f['failures']} times in a row: {f['error']}"
                                         for q, f in sorted(failing.items()))))
    return breaches


# --- Spark checkpoints -------------------------------------------------------------------

def latest_committed_offsets(checkpoint: Path) -> tuple[dict[str, dict[int, int]], float] | None:
    """Offsets of the newest committed micro-batch of a Structured Streaming checkpoint,
    and the commit's mtime. None when the query never committed a batch."""
    commits = checkpoint / "commits"
    if not commits.is_dir():
        return None
    batch_ids = sorted(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    if not batch_ids:
        return None
    last = batch_ids[-1]
    offsets_file = checkpoint / "offsets" / str(last)
    return parse_offsets_file(offsets_file.read_text()), (commits / str(last)).stat().st_mtime


def parse_offsets_file(text: str) -> dict[str, dict[int, int]]:
    """A Spark offset log entry: 'v1', a metadata line, then one JSON line per source."""
    merged: dict[str, dict[int, int]] = {}
    for line in text.splitlines()[2:]:
        line = line.strip()
        if not line.startswith("{"):
            continue
        for topic, partitions in json.loads(line).items():
            merged.setdefault(topic, {}).update({int(p): int(o) for p, o in partitions.items()})
    return merged


def read_progress(checkpoint_root: Path, query: str) -> dict | None:
    """The stream's report of the query's last finished batch (see cdc_stream.job.record_progress)."""
    path = checkpoint_root / names.STREAM_PROGRESS_DIR / f"{query}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# --- collectors ---------------------------------------------------------------------------

def failure_metrics(checkpoint_root: Path, metrics: Metrics, queries: tuple[str, ...] = STREAM_QUERIES) -> None:
    """The stream's failure report of each query (written by its supervisor when the query
    fails, removed at its next good batch)."""
    for query in queries:
        report = read_progress(checkpoint_root, f"{query}.failure")
        if report:
            # The stream names the cause; a report from an older stream has only the error.
            cause = report.get("cause") or _first_meaningful_line(str(report.get("error") or ""))
            metrics.failing_queries[query] = {"failures": int(report.get("failures") or 0), "error": cause}


def _first_meaningful_line(error: str, limit: int = 300) -> str:
    """The line that says what went wrong: the exception's message opens the report (a Spark
    error, "[ERROR_CLASS] message"); stack frames and traceback headers do not say it."""
    for line in (raw.strip() for raw in error.splitlines()):
        if line and not line.startswith(("Traceback", "File ", "at ", "...")):
            return line[:limit]
    return ""


def core_metrics(checkpoint_root: Path, metrics: Metrics, now: float | None = None) -> None:
    """The waiting room, and the quarantine totals since the stream started, from the core query's
    last batch report."""
    totals: dict[str, int] = {}
    for query in (names.STREAM_CORE_QUERY,):
        for reason, count in ((read_progress(checkpoint_root, query) or {}).get("quarantined_total") or {}).items():
            totals[reason] = totals.get(reason, 0) + count
    metrics.quarantined_total = totals
    report = read_progress(checkpoint_root, names.STREAM_CORE_QUERY)
    if report is None:
        return
    metrics.waiting_for_content = report.get("waiting")
    oldest = report.get("oldest_waiting_s")
    if oldest is not None:
        # The report is as old as the core query's last batch; the wait went on since.
        metrics.oldest_waiting_seconds = round(oldest + max(0.0, (now or time.time()) - report["finished_at"]), 1)


def quarantine_metrics(bootstrap: str, metrics: Metrics, topic: str = names.QUARANTINE_TOPIC,
                       group: str = names.WATCHDOG_QUARANTINE_GROUP, max_records: int = 200_000,
                       timeout_s: float = 30.0) -> None:
    """Quarantined records by reason since the previous check: read with a consumer group whose
    committed offsets mark what earlier checks counted."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_config(bootstrap, {"group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "log_level": 0}))
    counts: dict[str, int] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        todo = {tp.partition for tp in committed if ends[tp.partition] > max(tp.offset, 0)}
        if not todo:
            metrics.quarantined_new = counts
            return
        consumer.assign([TopicPartition(topic, tp.partition, tp.offset) for tp in committed if tp.partition in todo])
        seen, deadline = 0, time.monotonic() + timeout_s
        while todo and seen < max_records and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            seen += 1
            try:
                reason = json.loads(message.value()).get("reason") or "unknown"
            except (TypeError, ValueError):
                reason = "unreadable"
            counts[reason] = counts.get(reason, 0) + 1
            if message.offset() + 1 >= ends[message.partition()]:
                todo.discard(message.partition())
        if seen:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    metrics.quarantined_new = counts


def connector_metrics(connect, metrics: Metrics, auto_restart: bool = True) -> None:
    state = connect.status(names.CONNECTOR_NAME)
    if state is None:
        metrics.connector_state = "MISSING"
        return
    if auto_restart:
        # STOPPED is left alone: it is the state an operator (or cdc_resnapshot) puts the
        # connector in to work on its offsets (KIP-875); resuming it midway would undo that.
        # It is still a breach, so it is alerted.
        if state.connector == "PAUSED":
            connect.resume(names.CONNECTOR_NAME)
            metrics.connector_restarted.append(f"resumed from {state.connector}")
        elif state.failed:
            connect.restart(names.CONNECTOR_NAME, include_tasks=True, only_failed=True)
            metrics.connector_restarted.append("restarted failed connector/tasks")
    metrics.connector_state = state.connector
    metrics.connector_tasks = list(state.tasks)


def _describe_drift(drift: dict) -> str:
    parts = [f"{kind} {', '.join(str(c) for c in drift[kind])}" for kind in ("added", "dropped", "retyped")
             if drift.get(kind)]
    return ", ".join(parts)


def schema_metrics(pg_conn, metrics: Metrics) -> None:
    from cdc_platform.source_schema import schema_drift

    metrics.schema_drift = {table: asdict(drift) for table, drift in schema_drift(pg_conn).items()}


def redis_metrics(client, metrics: Metrics) -> None:
    from cdc_platform.aggregates import state_marker_present

    metrics.redis_state_lost = not state_marker_present(client)


def slot_metrics(pg_conn, metrics: Metrics) -> None:
    with pg_conn.cursor() as cur:
        cur.execute(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint "
            "FROM pg_replication_slots WHERE slot_name = %s", (names.REPLICATION_SLOT,))
        row = cur.fetchone()
    if row:
        metrics.slot_active, metrics.slot_lag_bytes = bool(row[0]), int(row[1] or 0)


def stream_metrics(bootstrap: str, checkpoint_root: Path, metrics: Metrics, now: float | None = None,
                   queries: tuple[str, ...] = STREAM_QUERIES) -> None:
    from confluent_kafka import Consumer, TopicPartition

    now = now or time.time()
    consumer = Consumer(client_config(bootstrap, {"group.id": "cdc-watchdog", "enable.auto.commit": False,
                         "log_level": 0}))
    oldest_unapplied_ms: int | None = None
    try:
        for query in queries:
            committed = latest_committed_offsets(query_checkpoint(checkpoint_root, query))
            if committed is None:
                metrics.sink_lag_messages[query] = None
                metrics.sink_lag_seconds[query] = None
                metrics.committed_messages[query] = None
                metrics.stream_idle_seconds[query] = None
                continue
            offsets, mtime = committed
            metrics.stream_idle_seconds[query] = round(now - mtime, 1)
            lag = 0
            query_oldest_ms: int | None = None
            for topic, partitions in offsets.items():
                for partition, offset in partitions.items():
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                    behind = max(0, high - offset)
                    lag += behind
                    if behind:
                        ts = _message_timestamp_ms(consumer, topic, partition, offset)
                        if ts is not None:
                            query_oldest_ms = ts if query_oldest_ms is None else min(query_oldest_ms, ts)
            metrics.sink_lag_messages[query] = lag
            metrics.committed_messages[query] = sum(o for partitions in offsets.values() for o in partitions.values())
            metrics.sink_lag_seconds[query] = 0.0 if query_oldest_ms is None else round(
                max(0.0, now - query_oldest_ms / 1000), 1)
            if query_oldest_ms is not None:
                oldest_unapplied_ms = query_oldest_ms if oldest_unapplied_ms is None else min(oldest_unapplied_ms,
                                                                                               query_oldest_ms)
    finally:
        consumer.close()
    metrics.freshness_seconds = 0.0 if oldest_unapplied_ms is None else round(now - oldest_unapplied_ms / 1000, 1)


def _message_timestamp_ms(consumer, topic: str, partition: int, offset: int) -> int | None:
    from confluent_kafka import TopicPartition

    consumer.assign([TopicPartition(topic, partition, offset)])
    msg = consumer.poll(5.0)
    consumer.unassign()
    if msg is None or msg.error():
        return None
    return msg.timestamp()[1]
