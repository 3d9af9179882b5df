"""Reconciliation of the Redis aggregates against Cassandra, correct while the stream runs.

Separate streaming queries write Cassandra and Redis, so at any instant either sink may be
ahead for some rows. Both record each row's source position (Cassandra as the write
timestamp, Redis in the row fence), which makes every row comparable on its own:

- settled: both sinks hold the same change, or neither holds a live row. Cassandra's row is
  expected; when Redis's fence records the same values its exact 64-bit pct is used, since
  Cassandra keeps pct as a 32-bit float and that rounding is not drift.
- in flight: the sinks hold different changes, so one of them has not caught up yet. Redis's
  own fence is expected: a row still moving is never drift. Kinds: redis_behind (Cassandra
  holds the newer change, or Redis has no fence), redis_ahead (Redis holds the newer change),
  unordered (Redis has a live row Cassandra does not: an insert Cassandra has not written yet,
  or a delete Redis has not applied; tombstones do not tell which).
- stuck: a disagreement whose positions have not moved for settle_seconds, remembered across
  runs in names.REDIS_RECONCILE_PENDING. Redis lost or missed that change (a flush, a restore),
  so Cassandra's state is expected and repair writes it, fence included. redis_ahead rows are
  never stuck: there Cassandra is the one behind, and repairing would set Redis back.

The expected aggregates are the recompute of those rows on Redis's own event-time clock,
diffed against a consistent snapshot of Redis. Repair is conditional on the snapshot's
watermark, so it never overwrites a change applied after the snapshot; when the stream moved,
the snapshot is read and diffed again.
"""
from __future__ import annotations

import logging
import re
import struct
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from cdc_platform import names
from cdc_platform.aggregates import (AggregateSnapshot, Drift, RepairConflict, Row, RowContribution,
                                     SnapshotUnstable, diff, mark_state_intact, read_snapshot, read_watermark,
                                     recompute, state_marker_present)
from cdc_platform.aggregates import repair as repair_aggregates
from cdc_platform.aggregates.recompute import contribution_of
from cdc_platform.aggregates.store import row_key

log = logging.getLogger(__name__)

SETTLED = "settled"
REDIS_BEHIND = "redis_behind"
REDIS_AHEAD = "redis_ahead"
UNORDERED = "unordered"
DISAGREEMENTS = (REDIS_BEHIND, REDIS_AHEAD, UNORDERED)

DEFAULT_SETTLE_SECONDS = 300
# Absolute, on sums and means of pcts: Redis maintains them incrementally, the recompute sums
# from scratch, and the two orders of float additions differ far below this.
DEFAULT_TOLERANCE = 1e-6
DEFAULT_ATTEMPTS = 5
EXAMPLES_PER_KIND = 5
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ReconcileError(RuntimeError):
    """Reconciliation could not compare the sinks."""


@dataclass(frozen=True)
class RedisRow:
    """A row as its Redis fence records it: the last applied position, and the live
    contribution, None when that change was a delete."""

    position: int
    contribution: RowContribution | None = None


@dataclass(frozen=True)
class Disagreement:
    """Where the sinks disagree on a row, and since when (epoch ms) at these positions."""

    kind: str
    cassandra_position: int | None
    redis_position: int | None
    since_ms: int

    @property
    def positions(self) -> tuple[int | None, int | None]:
        return self.cassandra_position, self.redis_position


@dataclass(frozen=True)
class Plan:
    """What Redis should hold, row by row, given both sinks' positions.

    rows: the expected live rows (input of the recompute); mismatched: settled rows whose
    fence records other values than Cassandra's row; in_flight and stuck: the disagreements.
    """

    rows: Mapping[int, Row]
    settled: int
    mismatched: tuple[int, ...]
    in_flight: Mapping[int, Disagreement]
    stuck: Mapping[int, Disagreement]

    @property
    def pending(self) -> dict[int, Disagreement]:
        """Every disagreement, to remember until the next run."""
        return {**self.in_flight, **self.stuck}

    def in_flight_by_kind(self) -> dict[str, int]:
        return _by_kind(self.in_flight.values())

    def stuck_by_kind(self) -> dict[str, int]:
        return _by_kind(self.stuck.values())


def _by_kind(disagreements: Iterable[Disagreement]) -> dict[str, int]:
    counts = dict.fromkeys(DISAGREEMENTS, 0)
    for d in disagreements:
        counts[d.kind] += 1
    return counts


# --- pure logic -----------------------------------------------------------------------------------

def classify(cassandra_row: Row | None, redis_row: RedisRow | None) -> str:
    """SETTLED or one of DISAGREEMENTS for one row id, by the positions each sink holds."""
    live_in_redis = redis_row is not None and redis_row.contribution is not None
    if cassandra_row is None:
        return UNORDERED if live_in_redis else SETTLED
    if redis_row is None or redis_row.position < cassandra_row.position:
        return REDIS_BEHIND
    if redis_row.position > cassandra_row.position:
        return REDIS_AHEAD
    return SETTLED


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _same_pct(cassandra_pct: float | None, redis_pct: float | None) -> bool:
    if cassandra_pct is None or redis_pct is None:
        return cassandra_pct is None and redis_pct is None
    try:
        return _float32(cassandra_pct) == _float32(redis_pct)
    except OverflowError:
        return False


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def matches(cassandra_row: Row, fence: RowContribution) -> bool:
    """Whether a fence records the values of a Cassandra row, pct compared at Cassandra's
    32-bit precision and content ids case-insensitively (Cassandra returns UUIDs)."""
    c = contribution_of(cassandra_row)
    return (_lower(c.content_id) == _lower(fence.content_id) and c.device == fence.device
            and c.minute == fence.minute and _same_pct(c.engagement_pct, fence.engagement_pct))


def row_from_fence(row_id: int, fence: RowContribution) -> Row:
    """A Row that recomputes to exactly the fence's contribution. The fence keeps the epoch
    minute only, which is all the aggregates depend on; its first millisecond stands in."""
    return Row(id=row_id, content_id=fence.content_id,
               event_ts_ms=None if fence.minute is None else fence.minute * 60_000,
               device=fence.device, engagement_pct=fence.engagement_pct, position=fence.position)


def plan(cassandra: Mapping[int, Row], redis_rows: Mapping[int, RedisRow], *, now_ms: int,
         settle_ms: int = DEFAULT_SETTLE_SECONDS * 1000,
         previous: Mapping[int, Disagreement] | None = None, redis_lost: bool = False) -> Plan:
    """Classify every row and choose its expected state.

    cassandra: row id -> current row, position = its write timestamp. redis_rows: row id ->
    fence, for every live fence and for the deleted fences of rows Cassandra holds (others do
    not matter). previous: the disagreements of the last run; one seen at the same positions
    for settle_ms or longer is stuck (settle_ms 0 trusts Cassandra at once). redis_lost: Redis
    lost its data since it last matched (names.REDIS_STATE_MARKER), so a row Redis is behind on
    is stuck at once: that is the loss, not a change on its way.
    """
    previous = previous or {}
    rows: dict[int, Row] = {}
    settled = 0
    mismatched: list[int] = []
    in_flight: dict[int, Disagreement] = {}
    stuck: dict[int, Disagreement] = {}
    live_in_redis = {row_id for row_id, r in redis_rows.items() if r.contribution is not None}

    for row_id in sorted(cassandra.keys() | live_in_redis):
        c, r = cassandra.get(row_id), redis_rows.get(row_id)
        kind = classify(c, r)
        if kind == SETTLED:
            settled += 1
            if r is not None and r.contribution is not None and matches(c, r.contribution):
                rows[row_id] = row_from_fence(row_id, r.contribution)
            else:
                mismatched.append(row_id)
                rows[row_id] = c
            continue

        positions = (None if c is None else c.position, None if r is None else r.position)
        seen = previous.get(row_id)
        since = seen.since_ms if seen is not None and seen.positions == positions else now_ms
        disagreement = Disagreement(kind, *positions, since_ms=since)
        if (kind != REDIS_AHEAD and now_ms - since >= settle_ms) or (redis_lost and kind == REDIS_BEHIND):
            stuck[row_id] = disagreement
            if c is not None:
                rows[row_id] = c
        else:
            in_flight[row_id] = disagreement
            if r is not None and r.contribution is not None:
                rows[row_id] = row_from_fence(row_id, r.contribution)

    return Plan(rows=rows, settled=settled, mismatched=tuple(mismatched), in_flight=in_flight, stuck=stuck)


def expected_snapshot(p: Plan, window_end_ms: int | None) -> AggregateSnapshot:
    """The aggregates Redis should hold, on Redis's event-time clock (its watermark's
    max_event_ts_ms), which also counts changes no current row shows."""
    return recompute(p.rows.values(), window_end_ms=window_end_ms)


def drift_examples(drift: Drift, limit: int = EXAMPLES_PER_KIND) -> dict[str, dict[str, list]]:
    """A few drifted members per aggregate, for the report and the alert."""
    return {
        name: {"missing": list(a.missing[:limit]), "extra": list(a.extra[:limit]),
               "mismatched": [list(m) for m in a.mismatched[:limit]]}
        for name, a in drift.aggregates.items() if not a.is_zero
    }


def encode_pending(pending: Mapping[int, Disagreement]) -> dict[str, str]:
    def pos(value):
        return "" if value is None else str(value)

    return {str(row_id): f"{d.kind}|{pos(d.cassandra_position)}|{pos(d.redis_position)}|{d.since_ms}"
            for row_id, d in pending.items()}


def decode_pending(raw: Mapping) -> dict[int, Disagreement]:
    """The remembered disagreements; an unreadable entry is dropped with a warning, which only
    restarts that row's settle time."""
    pending = {}
    for key, value in raw.items():
        key, value = _text(key), _text(value)
        try:
            kind, cpos, rpos, since = value.split("|")
            if kind not in DISAGREEMENTS:
                raise ValueError(f"unknown kind {kind!r}")
            pending[int(key)] = Disagreement(kind, int(cpos) if cpos else None, int(rpos) if rpos else None,
                                             int(since))
        except ValueError as exc:
            log.warning("reconcile: ignoring pending entry %s=%r: %s", key, value, exc)
    return pending


# --- reading the sinks ----------------------------------------------------------------------------

def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain CQL identifier: {name!r}")
    return name


def read_cassandra_rows(session, *, keyspace: str = names.CASSANDRA_KEYSPACE,
                        table: str = names.CASSANDRA_EVENTS_TABLE, fetch_size: int = 5000) -> dict[int, Row]:
    """Every current row, position = WRITETIME(source_lsn), which the sink sets to the LSN.

    source_lsn is written with every change and never null, unlike engagement_pct, whose
    null would hide the write timestamp. One paged scan over the token ring.
    """
    from cassandra.query import SimpleStatement

    query = SimpleStatement(
        "SELECT id, content_id, toUnixTimestamp(event_ts), device, engagement_pct, WRITETIME(source_lsn) "
        f"FROM {_identifier(keyspace)}.{_identifier(table)}", fetch_size=fetch_size)
    rows: dict[int, Row] = {}
    for row_id, content_id, event_ts_ms, device, pct, position in session.execute(query):
        if position is None:
            raise ReconcileError(f"{keyspace}.{table} row {row_id} has no source_lsn: it was not written by "
                                 "the stream's sink, so it cannot be ordered against Redis")
        rows[row_id] = Row(id=row_id, content_id=None if content_id is None else str(content_id),
                           event_ts_ms=event_ts_ms, device=device, engagement_pct=pct, position=position)
    return rows


def read_redis_rows(client, snapshot: AggregateSnapshot, row_ids: Iterable[int]) -> dict[int, RedisRow] | None:
    """The snapshot's live fences, plus the positions of fences of row_ids that are not live
    (deleted ones). None when Redis changed since the snapshot, so the two reads disagree."""
    redis_rows = {row_id: RedisRow(c.position, c) for row_id, c in snapshot.rows.items()}
    wanted = [row_id for row_id in row_ids if row_id not in snapshot.rows]
    pipe = client.pipeline(transaction=False)
    for row_id in wanted:
        pipe.hget(row_key(row_id), "pos")
    for row_id, pos in zip(wanted, pipe.execute() if wanted else []):
        if pos is not None:
            redis_rows[row_id] = RedisRow(int(_text(pos)))
    # Every state change moves the watermark, so an unchanged one brackets both reads.
    if read_watermark(client).state_version() != snapshot.watermark.state_version():
        return None
    return redis_rows


def read_pending(client) -> dict[int, Disagreement]:
    return decode_pending(client.hgetall(names.REDIS_RECONCILE_PENDING))


def write_pending(client, pending: Mapping[int, Disagreement]) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.delete(names.REDIS_RECONCILE_PENDING)
    if pending:
        pipe.hset(names.REDIS_RECONCILE_PENDING, mapping=encode_pending(pending))
    pipe.execute()


# --- the reconciliation ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Analysis:
    snapshot: AggregateSnapshot
    plan: Plan
    expected: AggregateSnapshot
    drift: Drift


def analyse(client, cassandra: Mapping[int, Row], *, now_ms: int, settle_ms: int,
            previous: Mapping[int, Disagreement], tolerance: float = DEFAULT_TOLERANCE,
            attempts: int = DEFAULT_ATTEMPTS, redis_lost: bool = False) -> Analysis:
    """Snapshot Redis, classify every row against `cassandra`, diff. Raises SnapshotUnstable
    when Redis changed during each of `attempts` reads."""
    for _ in range(attempts):
        snapshot = read_snapshot(client)
        redis_rows = read_redis_rows(client, snapshot, cassandra.keys())
        if redis_rows is None:
            continue
        p = plan(cassandra, redis_rows, now_ms=now_ms, settle_ms=settle_ms, previous=previous,
                 redis_lost=redis_lost)
        expected = expected_snapshot(p, snapshot.max_event_ts_ms)
        return Analysis(snapshot, p, expected, diff(expected, snapshot, tolerance))
    raise SnapshotUnstable(f"Redis changed during each of {attempts} reconcile reads")


def reconcile(session, client, *, keyspace: str = names.CASSANDRA_KEYSPACE,
              table: str = names.CASSANDRA_EVENTS_TABLE, repair: bool = True,
              settle_seconds: float = DEFAULT_SETTLE_SECONDS, tolerance: float = DEFAULT_TOLERANCE,
              attempts: int = DEFAULT_ATTEMPTS, remember: bool = True, now_ms: int | None = None) -> dict:
    """Compare Redis with Cassandra `keyspace.table`, repair drift, and report it as numbers.

    session: a cassandra-driver Session; client: a redis-py client on the aggregates' database.
    Cassandra is read once, before Redis, so the window between the Redis snapshot and the
    conditional repair stays short; when the stream moved meanwhile, the snapshot is read and
    diffed again, up to `attempts` times; repair_error says when it never held still. After a
    repair both sinks are read afresh and diffed: drift_after_total is what that found (None if
    Redis never held still for the read); without a repair it is the drift left as is.
    remember=False neither reads nor writes the remembered disagreements (a read-only check).
    Returns a JSON-serialisable report.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    settle_ms = int(settle_seconds * 1000)
    cassandra = read_cassandra_rows(session, keyspace=keyspace, table=table)
    previous = read_pending(client) if remember else {}
    redis_lost = not state_marker_present(client)

    repaired, repair_error, tries = False, None, 0
    current = analyse(client, cassandra, now_ms=now_ms, settle_ms=settle_ms, previous=previous,
                      tolerance=tolerance, attempts=attempts, redis_lost=redis_lost)
    while repair and not current.drift.is_zero:
        tries += 1
        try:
            repair_aggregates(client, current.expected, if_watermark=current.snapshot.watermark)
            repaired = True
            break
        except RepairConflict as exc:
            log.info("reconcile: repair attempt %d conflicted with the stream: %s", tries, exc)
            if tries >= attempts:
                repair_error = (f"not repaired: the stream changed Redis during each of {attempts} attempts; "
                                "the next run retries")
                break
            current = analyse(client, cassandra, now_ms=now_ms, settle_ms=settle_ms, previous=previous,
                              tolerance=tolerance, attempts=attempts, redis_lost=redis_lost)
    if remember:
        write_pending(client, current.plan.pending)

    report = {
        "keyspace": keyspace,
        "rows_cassandra": len(cassandra),
        "redis_state_lost": redis_lost,
        "rows_settled": current.plan.settled,
        "rows_in_flight": len(current.plan.in_flight),
        "in_flight": current.plan.in_flight_by_kind(),
        "rows_stuck": len(current.plan.stuck),
        "stuck": current.plan.stuck_by_kind(),
        "drift_before": current.drift.summary(),
        "drift_total": current.drift.total,
        "drift_examples": drift_examples(current.drift),
        "repaired": repaired,
        "repair_attempts": tries,
        "repair_error": repair_error,
        "drift_after_total": current.drift.total,
        "watermark": {"batch_id": current.snapshot.watermark.batch_id,
                      "max_position": current.snapshot.watermark.max_position,
                      "max_event_ts_ms": current.snapshot.watermark.max_event_ts_ms},
    }
    if repaired:
        try:
            after = analyse(client, read_cassandra_rows(session, keyspace=keyspace, table=table), now_ms=now_ms,
                            settle_ms=settle_ms, previous=current.plan.pending, tolerance=tolerance,
                            attempts=attempts)
        except SnapshotUnstable as exc:
            report["drift_after_total"] = None
            report["repair_error"] = f"repaired, but not verified: {exc}"
        else:
            report["drift_after_total"] = after.drift.total
            if not after.drift.is_zero:
                report["drift_after_examples"] = drift_examples(after.drift)
                log.error("reconcile: drift left after repair: %s", report["drift_after_examples"])
    if remember and report["drift_after_total"] == 0:
        mark_state_intact(client)
    log.info("reconcile: %d Cassandra rows, %d in flight, %d stuck, drift %d, repaired %s, drift after %s",
             report["rows_cassandra"], report["rows_in_flight"], report["rows_stuck"], report["drift_total"],
             repaired, report["drift_after_total"])
    return report
