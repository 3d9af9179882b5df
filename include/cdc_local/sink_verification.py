"""What the seed's verification section shows, and the checks that the sinks match the source.

Used by the demo (printing) and the end-to-end tests (asserting).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from cdc_platform import names, semantics

EVENT_COLUMNS = ("id", "content_id", "user_id", "event_type", "event_ts", "duration_ms", "device",
                 "raw_payload", "engagement_pct")


def source_rejection(row: dict, now: datetime) -> str | None:
    """Why the stream quarantines this source row, by the rules in semantics (None: it is valid).

    Mirrors the stream's validation for rows as PostgreSQL stores them. ``text_bytes`` (the UTF-8
    size of the row's text) stands for the JSON size the OversizedValueGuard measures, which
    escaping makes slightly larger: rows within a few percent of the limit may be judged apart.
    """
    # An event_ts PostgreSQL holds but a datetime cannot is there: it is out of range (below).
    present = {**row, "event_type": semantics.normalize_event_type(row.get("event_type")),
               "event_ts": row.get("event_ts") or row.get("event_ts_out_of_range") or None}
    if any(present.get(name) is None for name in semantics.REQUIRED_EVENT_FIELDS):
        return semantics.MISSING_REQUIRED_FIELD
    if row.get("duration_ms") is not None and row["duration_ms"] < 0:
        return semantics.NEGATIVE_DURATION
    if row.get("event_ts_out_of_range"):
        return semantics.OUT_OF_RANGE_TIMESTAMP
    if semantics.is_too_far_in_future(row["event_ts"], now):
        return semantics.FUTURE_EVENT_TS
    if row.get("length_known") is False:
        return semantics.UNKNOWN_CONTENT
    if (row.get("text_bytes") or 0) > semantics.MAX_CAPTURED_VALUE_BYTES:
        return semantics.OVERSIZED_VALUE
    return None


def expected_rows_from_postgres(pg_conn, now: datetime | None = None) -> dict[int, dict]:
    """Current engagement rows that the sinks must hold, enriched the way the stream enriches."""
    now = now or datetime.now(timezone.utc)
    bounds = (semantics.MIN_TIMESTAMP.replace(tzinfo=None), semantics.MAX_TIMESTAMP.replace(tzinfo=None))
    with pg_conn.cursor() as cur:
        # BC and +/-infinity timestamps do not fit a Python datetime: PostgreSQL tells them apart.
        cur.execute(
            f"SELECT e.id, e.content_id::text, e.user_id::text, e.event_type, "
            f"CASE WHEN e.event_ts BETWEEN %s AND %s THEN e.event_ts END, "
            f"NOT (e.event_ts BETWEEN %s AND %s), e.duration_ms, e.device, "
            f"c.length_seconds, c.id IS NOT NULL, "
            f"coalesce(octet_length(e.event_type), 0) + coalesce(octet_length(e.device), 0) "
            f"+ coalesce(octet_length(e.raw_payload::text), 0) FROM {names.PG_EVENTS_TABLE} e "
            f"LEFT JOIN {names.PG_CONTENT_TABLE} c ON c.id = e.content_id", bounds + bounds)
        rows = cur.fetchall()
    pg_conn.rollback()
    expected = {}
    for rid, content_id, user_id, event_type, event_ts, out_of_range, duration, device, length, known, text_bytes \
            in rows:
        row = {"id": rid, "content_id": content_id, "user_id": user_id, "event_type": event_type,
               "event_ts": event_ts, "event_ts_out_of_range": bool(out_of_range), "duration_ms": duration,
               "device": device, "length_known": known, "text_bytes": text_bytes}
        if source_rejection(row, now) is None:
            row["device"] = semantics.normalize_device(device)
            row["event_type"] = semantics.normalize_event_type(event_type)
            row["engagement_pct"] = semantics.engagement_pct(duration, length)
            expected[rid] = row
    return expected


def cassandra_rows(session, keyspace: str = names.CASSANDRA_KEYSPACE) -> dict[int, dict]:
    result = session.execute(
        f"SELECT id, content_id, device, duration_ms, engagement_pct, event_type FROM "
        f"{keyspace}.{names.CASSANDRA_EVENTS_TABLE}")
    return {r.id: {"content_id": str(r.content_id) if r.content_id else None, "device": r.device,
                   "duration_ms": r.duration_ms, "engagement_pct": r.engagement_pct, "event_type": r.event_type}
            for r in result}


@dataclass
class Comparison:
    expected: int
    actual: int
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    def summary(self) -> str:
        return (f"expected {self.expected}, actual {self.actual}, missing {len(self.missing)}, "
                f"extra {len(self.extra)}, mismatched {len(self.mismatched)}")


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    # Cassandra stores engagement_pct as a 32-bit float.
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def compare_cassandra(expected: dict[int, dict], actual: dict[int, dict]) -> Comparison:
    comparison = Comparison(expected=len(expected), actual=len(actual))
    comparison.missing = sorted(set(expected) - set(actual))
    comparison.extra = sorted(set(actual) - set(expected))
    for rid in set(expected) & set(actual):
        e, a = expected[rid], actual[rid]
        if (e["content_id"] != a["content_id"] or e["device"] != a["device"] or e["duration_ms"] != a["duration_ms"]
                or e["event_type"] != a["event_type"] or not _close(e["engagement_pct"], a["engagement_pct"])):
            comparison.mismatched.append(rid)
    comparison.mismatched.sort()
    return comparison


def wait_for_cassandra_to_match(pg_conn, session, timeout: float = 300, interval: float = 2.0,
                                on_progress=None) -> Comparison:
    deadline = time.monotonic() + timeout
    while True:
        comparison = compare_cassandra(expected_rows_from_postgres(pg_conn), cassandra_rows(session))
        if comparison.equal or time.monotonic() > deadline:
            return comparison
        if on_progress:
            on_progress(comparison)
        time.sleep(interval)


def redis_sorted_set(client, key: str) -> list[tuple[str, float]]:
    return [(m.decode() if isinstance(m, bytes) else m, s) for m, s in client.zrange(key, 0, -1, withscores=True)]


def device_insights(client) -> dict[str, dict[str, str]]:
    devices = sorted(d.decode() if isinstance(d, bytes) else d for d in client.smembers(names.REDIS_DEVICES))
    out = {}
    for device in devices:
        raw = client.hgetall(f"{names.REDIS_DEVICE_PREFIX}{device}")
        out[device] = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                       for k, v in raw.items()}
    return out


def quarantine_reasons(bootstrap: str, topic: str = names.QUARANTINE_TOPIC, timeout: float = 10) -> dict[str, int]:
    """Count quarantined source records by reason (reads the whole topic once).

    Publishing is at-least-once, so records are deduplicated on their source coordinates.
    """
    import json
    import uuid

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 0})
    counts: dict[str, int] = {}
    seen: set[tuple] = set()
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return counts
        ends = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        deadline = time.monotonic() + timeout * 3
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            try:
                record = json.loads(msg.value())
            except (ValueError, TypeError):
                record = {}
            reason = record.get("reason", "?")
            identity = (record.get("topic"), record.get("partition"), record.get("offset"), reason)
            if record.get("offset") is None or identity not in seen:
                seen.add(identity)
                counts[reason] = counts.get(reason, 0) + 1
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    finally:
        consumer.close()
    return counts
