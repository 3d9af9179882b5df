"""The Redis side of the aggregates: fenced apply, consistent snapshot, watermark, repair.

Every function takes a redis-py client (decode_responses on or off) for a standalone Redis.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Iterator, Sequence

import redis

from cdc_platform import names, semantics

from .model import (AggregateSnapshot, ApplyStats, Change, RowContribution, Watermark, pct_band)

APPLY_SCRIPT = resources.files(__package__).joinpath("apply_changes.lua").read_text()
APPLY_SHA = hashlib.sha1(APPLY_SCRIPT.encode()).hexdigest()
REPAIR_FENCES_SCRIPT = resources.files(__package__).joinpath("repair_fences.lua").read_text()
# Fences per repair_fences call; the calls go out pipelined, a few per round trip.
REPAIR_FENCES_PER_CALL = 500

_SCRIPT_KEYS = (names.REDIS_COUNTS, names.REDIS_10M, names.REDIS_AVG_PCT, names.REDIS_PCT_SUM,
                names.REDIS_PCT_COUNT, names.REDIS_DEVICES, names.REDIS_WATERMARK)
_SCRIPT_HEADER = (names.REDIS_MINUTE_PREFIX, names.REDIS_DEVICE_PREFIX, names.REDIS_ROW_PREFIX,
                  semantics.ROLLING_WINDOW_MINUTES, semantics.DELETED_ROW_FENCE_TTL_MS)
# Script calls sent per round trip. Each call blocks Redis while it runs, so a call stays
# small (batch_size changes) and the round trip is amortised over several calls instead.
CALLS_PER_ROUND_TRIP = 8
# What a fence records about the row; its other field, `at` (when the change was applied),
# is informational and never compared or rewritten.
_ROW_FIELDS = ("pos", "deleted", "content", "minute", "device", "pct", "band")
_DEVICE_INT_FIELDS = ("count", "pct_count", "very_low", "very_high")


class SnapshotUnstable(RuntimeError):
    """The aggregates kept changing while they were read."""


class RepairConflict(RuntimeError):
    """Redis changed since the state the repair was computed for."""


@dataclass(frozen=True)
class RepairResult:
    keys_rewritten: int
    fences_rewritten: int


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


def row_key(row_id: int) -> str:
    return f"{names.REDIS_ROW_PREFIX}{row_id}"


def minute_key(minute: int) -> str:
    return f"{names.REDIS_MINUTE_PREFIX}{minute}"


def device_key(device: str) -> str:
    return f"{names.REDIS_DEVICE_PREFIX}{device}"


def _change_fields(change: Change) -> tuple:
    """One change's ARGV group; the order is the script's."""
    ts = change.event_ts_ms
    pct = change.engagement_pct
    return (
        change.op, str(change.position), str(change.id), change.content_id or "",
        "" if ts is None else str(int(ts)),
        "" if ts is None else str(semantics.minute_bucket(int(ts))),
        change.device or "",
        "" if pct is None else repr(float(pct)),
        pct_band(pct),
    )


def _chunks(items: Iterable[Change], size: int) -> Iterator[list[Change]]:
    chunk: list[Change] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _run_round_trip(client: redis.Redis, chunk: Sequence[Change], batch_size: int) -> list:
    """One pipelined round trip: a script call per batch_size changes; the per-change results."""
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(chunk), batch_size):
        args = [field for change in chunk[start:start + batch_size] for field in _change_fields(change)]
        pipe.evalsha(APPLY_SHA, len(_SCRIPT_KEYS), *_SCRIPT_KEYS, *_SCRIPT_HEADER, *args)
    results = []
    for result in pipe.execute(raise_on_error=False):
        if isinstance(result, Exception):
            raise result
        results.extend(result)
    if len(results) != len(chunk):
        raise RuntimeError(f"apply script returned {len(results)} results for {len(chunk)} changes")
    return results


def apply_changes(client: redis.Redis, changes: Iterable[Change], *, batch_size: int = 250) -> ApplyStats:
    """Apply changes in order, batch_size changes per atomic script call, several calls per
    pipelined round trip. Each change is fenced by its row's last-applied position.

    Order and duplicates do not matter: a change at or below its row's stored position is
    skipped. A batch that fails part-way can therefore simply be retried.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    applied = skipped = 0
    for chunk in _chunks(changes, batch_size * CALLS_PER_ROUND_TRIP):
        try:
            results = _run_round_trip(client, chunk, batch_size)
        except redis.exceptions.NoScriptError:
            # First use on this server, or its script cache was flushed by a restart.
            # Calls that did run are fenced, so re-running the whole round trip is safe.
            client.script_load(APPLY_SCRIPT)
            results = _run_round_trip(client, chunk, batch_size)
        for result in results:
            if int(result) == 1:
                applied += 1
            else:
                skipped += 1
    return ApplyStats(applied=applied, skipped_stale=skipped)


def _parse_watermark(raw: dict) -> Watermark:
    h = {_text(k): _text(v) for k, v in raw.items()}

    def num(field):
        return None if h.get(field) in (None, "") else int(h[field])

    return Watermark(batch_id=num("batch_id"), max_position=num("max_position"),
                     max_event_ts_ms=num("max_event_ts_ms"), window_end_minute=num("window_end_minute"),
                     applied=num("applied") or 0, repairs=num("repairs") or 0,
                     batch_committed_ms=num("batch_committed_ms"))


def read_watermark(client: redis.Redis) -> Watermark:
    return _parse_watermark(client.hgetall(names.REDIS_WATERMARK))


def state_marker_present(client: redis.Redis) -> bool:
    """False when Redis lost its data since it was last known to match Cassandra (names.REDIS_STATE_MARKER)."""
    return bool(client.exists(names.REDIS_STATE_MARKER))


def mark_state_intact(client: redis.Redis) -> None:
    client.set(names.REDIS_STATE_MARKER, str(int(time.time() * 1000)))


def establish_state_marker(client: redis.Redis) -> str:
    """Provisioning: mark an empty Redis (no watermark yet) as intact. A Redis that holds
    aggregates without the marker is left to reconcile, which restores it from Cassandra."""
    if state_marker_present(client):
        return "present"
    if client.exists(names.REDIS_WATERMARK):
        return "missing: the next reconcile restores Redis from Cassandra"
    mark_state_intact(client)
    return "created"


def commit_batch(client: redis.Redis, batch_id: int) -> None:
    """Record that every change of micro-batch batch_id has been applied."""
    client.hset(names.REDIS_WATERMARK, mapping={"batch_id": int(batch_id),
                                                "batch_committed_ms": int(time.time() * 1000)})


def _scan_keys(client: redis.Redis) -> tuple[list[str], list[str], list[str]]:
    minutes, devices, rows = [], [], []
    for key in client.scan_iter(count=1000):
        key = _text(key)
        if key.startswith(names.REDIS_MINUTE_PREFIX):
            minutes.append(key)
        elif key.startswith(names.REDIS_DEVICE_PREFIX):
            devices.append(key)
        elif key.startswith(names.REDIS_ROW_PREFIX):
            rows.append(key)
    return minutes, devices, rows


def _zset(pairs) -> dict[str, float]:
    return {_text(member): float(score) for member, score in pairs}


def _hash_floats(raw: dict) -> dict[str, float]:
    return {_text(k): float(v) for k, v in raw.items()}


def _parse_fence(raw: dict) -> dict[str, str]:
    """The fence's position and contribution; `at` is left out, so comparing two fences (as
    repair does) never sees a difference in when they were applied."""
    fence = {_text(k): _text(v) for k, v in raw.items()}
    return {field: fence[field] for field in _ROW_FIELDS if field in fence}


def _fence_contribution(fence: dict[str, str]) -> RowContribution | None:
    """The live contribution a fence records, or None for a deleted row."""
    if fence.get("deleted", "1") != "0":
        return None
    pct, minute = fence.get("pct") or "", fence.get("minute") or ""
    return RowContribution(content_id=fence.get("content") or None, device=fence.get("device") or None,
                           engagement_pct=float(pct) if pct else None, minute=int(minute) if minute else None,
                           position=int(fence["pos"]) if fence.get("pos") else None)


def read_snapshot(client: redis.Redis, *, attempts: int = 5) -> AggregateSnapshot:
    """Every aggregate key as one consistent snapshot, with the watermark it corresponds to.

    Reads are pipelined, not blocking; the read is retried when the watermark moved meanwhile
    (each applied change and each repair moves it). Raises SnapshotUnstable after `attempts`.
    """
    for _ in range(attempts):
        before = read_watermark(client)
        minute_keys, device_keys, row_keys = _scan_keys(client)
        pipe = client.pipeline(transaction=False)
        pipe.zrange(names.REDIS_COUNTS, 0, -1, withscores=True)
        pipe.zrange(names.REDIS_10M, 0, -1, withscores=True)
        pipe.zrange(names.REDIS_AVG_PCT, 0, -1, withscores=True)
        pipe.hgetall(names.REDIS_PCT_SUM)
        pipe.hgetall(names.REDIS_PCT_COUNT)
        pipe.smembers(names.REDIS_DEVICES)
        for key in minute_keys:
            pipe.zrange(key, 0, -1, withscores=True)
        for key in device_keys:
            pipe.hgetall(key)
        for key in row_keys:
            pipe.hgetall(key)
        pipe.hgetall(names.REDIS_WATERMARK)
        results = pipe.execute()
        after = _parse_watermark(results[-1])
        if after.state_version() != before.state_version():
            continue

        counts, window_10m, avg, psum, pcount, device_set = results[:6]
        rest = results[6:-1]
        minute_raw = rest[:len(minute_keys)]
        device_raw = rest[len(minute_keys):len(minute_keys) + len(device_keys)]
        row_raw = rest[len(minute_keys) + len(device_keys):]

        buckets = {}
        for key, pairs in zip(minute_keys, minute_raw):
            suffix = key[len(names.REDIS_MINUTE_PREFIX):]
            buckets[int(suffix) if suffix.lstrip("-").isdigit() else suffix] = _zset(pairs)
        devices = {key[len(names.REDIS_DEVICE_PREFIX):]: _hash_floats(raw)
                   for key, raw in zip(device_keys, device_raw) if raw}
        rows = {}
        for key, raw in zip(row_keys, row_raw):
            contribution = _fence_contribution(_parse_fence(raw)) if raw else None
            if contribution is not None:
                rows[int(key[len(names.REDIS_ROW_PREFIX):])] = contribution

        return AggregateSnapshot(
            counts=_zset(counts), window_10m=_zset(window_10m), avg_pct=_zset(avg),
            pct_sum=_hash_floats(psum), pct_count=_hash_floats(pcount),
            minute_buckets={m: b for m, b in buckets.items() if b},
            devices=devices, device_set=frozenset(_text(d) for d in device_set), rows=rows,
            max_event_ts_ms=after.max_event_ts_ms, window_end_minute=after.window_end_minute,
            watermark=after,
        )
    raise SnapshotUnstable(f"Redis aggregates changed during each of {attempts} snapshot reads; "
                           "retry later or read while the stream is paused")


def _num(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _fence_args(row_id: int, position: int, c: RowContribution | None) -> tuple[str, ...]:
    """One fence's repair_fences.lua fields; c None: a deleted row."""
    if c is None:
        return (str(row_id), str(position), "1", "", "", "", "", "")
    return (str(row_id), str(position), "0", c.content_id or "", "" if c.minute is None else str(c.minute),
            c.device or "", "" if c.engagement_pct is None else repr(float(c.engagement_pct)), pct_band(c.engagement_pct))


def _fence_fields(c: RowContribution | None, position: int) -> dict[str, str]:
    """What a fence holds once repair_fences.lua wrote it (to skip fences already right)."""
    _, pos, deleted, content, minute, device, pct, band = _fence_args(0, position, c)
    if c is None:
        return {"pos": pos, "deleted": deleted}
    return {"pos": pos, "deleted": deleted, "content": content, "minute": minute, "device": device, "pct": pct,
            "band": band}


def _write_fences(client: redis.Redis, fences: list[tuple[str, ...]]) -> int:
    """Write fences through repair_fences.lua, in pipelined chunks; returns how many it wrote.
    Outside any transaction: a full rebuild writes one fence per row, more than a MULTI should
    queue on the server, and the script never sets a row back, so a chunk can run at any time."""
    header = (names.REDIS_ROW_PREFIX, semantics.DELETED_ROW_FENCE_TTL_MS)
    written = 0
    calls = [fences[i:i + REPAIR_FENCES_PER_CALL] for i in range(0, len(fences), REPAIR_FENCES_PER_CALL)]
    for start in range(0, len(calls), CALLS_PER_ROUND_TRIP):
        pipe = client.pipeline(transaction=False)
        for call in calls[start:start + CALLS_PER_ROUND_TRIP]:
            pipe.eval(REPAIR_FENCES_SCRIPT, 0, *header, *(field for fence in call for field in fence))
        written += sum(int(n) for n in pipe.execute())
    return written


def repair(client: redis.Redis, expected: AggregateSnapshot, *, if_watermark: Watermark | None = None,
           attempts: int = 5) -> RepairResult:
    """Rewrite every aggregate key, and the row fences, to `expected`.

    Fences go first, in chunks, each written only when it does not set its row back (a replay
    of a change already covered stays a no-op); rows absent from `expected` get deleted
    fences. Then every aggregate key, and the watermark's event-time clock, are rewritten in
    one MULTI/EXEC.

    The aggregates are only rewritten while Redis is still at if_watermark (by default, the
    watermark when the repair starts): RepairConflict otherwise, as `expected` is out of date.
    A conflict leaves the fences written; they never set a row back, so the next diff sees
    what is left. `attempts` bounds the retries when the watermark only moves during the EXEC.
    """
    current = read_watermark(client)
    guard = if_watermark or current
    if current.state_version() != guard.state_version():
        raise RepairConflict(f"Redis moved from watermark {guard}; recompute the expected state and retry")
    _, _, row_keys = _scan_keys(client)
    reader = client.pipeline(transaction=False)
    for key in row_keys:
        reader.hgetall(key)
    stored = {int(key[len(names.REDIS_ROW_PREFIX):]): _parse_fence(raw)
              for key, raw in zip(row_keys, reader.execute())}
    fences = []
    for row_id, contribution in expected.rows.items():
        position = max(int(stored.get(row_id, {}).get("pos") or 0), contribution.position or 0)
        if stored.get(row_id) != _fence_fields(contribution, position):
            fences.append(_fence_args(row_id, position, contribution))
    for row_id, fence in stored.items():
        if row_id not in expected.rows and fence.get("deleted") != "1":
            fences.append(_fence_args(row_id, int(fence.get("pos") or 0), None))
    fences_rewritten = _write_fences(client, fences)

    for _ in range(attempts):
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(names.REDIS_WATERMARK)
                current = _parse_watermark(pipe.hgetall(names.REDIS_WATERMARK))
                if current.state_version() != guard.state_version():
                    raise RepairConflict(f"Redis moved from watermark {guard} to {current}; "
                                         "recompute the expected state and retry")
                # Reads after WATCH stay valid until EXEC: every state change touches the watermark.
                minute_keys, device_keys, _ = _scan_keys(client)
                pipe.multi()
                fixed_keys = (names.REDIS_COUNTS, names.REDIS_10M, names.REDIS_AVG_PCT, names.REDIS_PCT_SUM,
                              names.REDIS_PCT_COUNT, names.REDIS_DEVICES)
                pipe.delete(*fixed_keys, *minute_keys, *device_keys)
                for key, members in ((names.REDIS_COUNTS, expected.counts), (names.REDIS_10M, expected.window_10m),
                                     (names.REDIS_AVG_PCT, expected.avg_pct)):
                    if members:
                        pipe.zadd(key, {m: float(s) for m, s in members.items()})
                if expected.pct_sum:
                    pipe.hset(names.REDIS_PCT_SUM, mapping={m: repr(float(v)) for m, v in expected.pct_sum.items()})
                if expected.pct_count:
                    pipe.hset(names.REDIS_PCT_COUNT, mapping={m: _num(v) for m, v in expected.pct_count.items()})
                for minute, members in expected.minute_buckets.items():
                    if members:
                        pipe.zadd(minute_key(minute), {m: float(s) for m, s in members.items()})
                for device, fields in expected.devices.items():
                    pipe.hset(device_key(device), mapping={
                        f: _num(v) if f in _DEVICE_INT_FIELDS else repr(float(v)) for f, v in fields.items()})
                if expected.device_set:
                    pipe.sadd(names.REDIS_DEVICES, *expected.device_set)
                if expected.max_event_ts_ms is not None:
                    pipe.hset(names.REDIS_WATERMARK, mapping={
                        "max_event_ts_ms": expected.max_event_ts_ms,
                        "window_end_minute": semantics.minute_bucket(expected.max_event_ts_ms)})
                pipe.hincrby(names.REDIS_WATERMARK, "repairs", 1)
                pipe.execute()
                touched = {*fixed_keys, *minute_keys, *device_keys,
                           *(minute_key(m) for m in expected.minute_buckets),
                           *(device_key(d) for d in expected.devices)}
                return RepairResult(keys_rewritten=len(touched), fences_rewritten=fences_rewritten)
            except redis.WatchError:
                continue
    raise RepairConflict(f"Redis aggregates kept changing during {attempts} repair attempts")
