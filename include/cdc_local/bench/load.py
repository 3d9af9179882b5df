"""Load for the benchmark: traffic.py's rows, written in batches on an open-loop schedule.

One transaction per tick holds every change due by then: one multi-row INSERT ... RETURNING id,
one UPDATE ... FROM (VALUES ...) and one DELETE ... = ANY(...). The mix (inserts, updates of live
rows, deletes of live rows, a few deliberately bad rows) and the rows themselves come from
cdc_local.traffic, so the stream sees what the demo writes, only faster.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from cdc_platform import names, semantics

from cdc_local import traffic
from cdc_local.bench.logic import OpenLoopSchedule, kept_rate

INSERT_SQL = (f"INSERT INTO {names.PG_EVENTS_TABLE} (content_id, user_id, event_type, event_ts, duration_ms, device, "
              "raw_payload) VALUES %s RETURNING id")
UPDATE_SQL = (f"UPDATE {names.PG_EVENTS_TABLE} AS e SET duration_ms = v.duration_ms, device = v.device "
              "FROM (VALUES %s) AS v(id, duration_ms, device) WHERE e.id = v.id")
DELETE_SQL = f"DELETE FROM {names.PG_EVENTS_TABLE} WHERE id = ANY(%s)"


class Workload:
    """traffic.py's catalogue, users and events; remembers the live rows it may update or delete."""

    def __init__(self, seed: int, update_share: float = 0.1, delete_share: float = 0.04, bad_share: float = 0.02,
                 content_count: int = 24, user_count: int = 300, catalogue_seed: int = 7):
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        catalogue_rng = random.Random(catalogue_seed)
        self.catalogue = traffic.make_catalogue(catalogue_rng, content_count, now)
        self.users = [traffic._uuid(catalogue_rng) for _ in range(user_count)]  # noqa: SLF001 - same users as traffic
        self.lengths = {c["id"]: c["length_seconds"] or 300 for c in self.catalogue}
        self.rng = random.Random(seed)
        self.update_share, self.delete_share, self.bad_share = update_share, delete_share, bad_share
        self.live: list[int] = []
        self.live_length: dict[int, int] = {}

    def split(self, n: int) -> tuple[int, int, int]:
        """How many of ``n`` changes are inserts, updates and deletes (updates and deletes need live rows)."""
        updates = deletes = 0
        for _ in range(n):
            roll = self.rng.random()
            if roll < self.delete_share:
                deletes += 1
            elif roll < self.delete_share + self.update_share:
                updates += 1
        available = len(self.live)
        deletes = min(deletes, available)
        updates = min(updates, available - deletes)
        return n - updates - deletes, updates, deletes

    def take_deletes(self, n: int) -> list[int]:
        ids = []
        for _ in range(n):
            i = self.rng.randrange(len(self.live))
            self.live[i], self.live[-1] = self.live[-1], self.live[i]
            row_id = self.live.pop()
            self.live_length.pop(row_id, None)
            ids.append(row_id)
        return ids

    def updates(self, n: int) -> list[tuple[int, int, str | None]]:
        rows = []
        for i in self.rng.sample(range(len(self.live)), n):
            row_id = self.live[i]
            device = traffic._pick(self.rng, traffic.DEVICE_MIX)  # noqa: SLF001
            duration = int(traffic.watch_fraction(self.rng, device) * self.live_length.get(row_id, 300) * 1000)
            rows.append((row_id, duration, self.rng.choice(traffic.RAW_DEVICE_SPELLINGS[device])))
        return rows

    def inserts(self, n: int) -> list[tuple]:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        rows = []
        for _ in range(n):
            event, _bad = traffic.make_event(self.rng, self.catalogue, self.users, now, self.bad_share)
            rows.append((event["content_id"], event["user_id"], event["event_type"], event["event_ts"],
                         event["duration_ms"], event["device"], event["raw_payload"]))
        return rows

    def inserted(self, rows: list[tuple], ids: list[int]) -> None:
        for row, row_id in zip(rows, ids):
            self.live.append(row_id)
            self.live_length[row_id] = self.lengths.get(row[0], 300)


@dataclass
class LoadResult:
    target_rate: float
    planned: int
    started: float = 0.0
    finished: float = 0.0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    transactions: int = 0
    max_behind_s: float = 0.0
    commits: list[tuple[float, int]] = field(default_factory=list)   # (commit time, changes)
    row_commit: dict[int, float] = field(default_factory=dict)       # inserted row id -> commit time

    @property
    def changes(self) -> int:
        return self.inserts + self.updates + self.deletes

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def achieved_rate(self) -> float:
        return self.changes / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        achieved = self.achieved_rate()
        out = {"planned": self.planned, "changes": self.changes, "inserts": self.inserts, "updates": self.updates,
               "deletes": self.deletes, "transactions": self.transactions, "seconds": round(self.seconds, 2),
               "achieved_changes_per_s": round(achieved, 1)}
        if self.target_rate > 0:
            out.update(target_changes_per_s=self.target_rate, max_behind_s=round(self.max_behind_s, 3),
                       kept_rate=kept_rate(self.target_rate, achieved, self.max_behind_s))
        return out


class ChangeWriter:
    """Writes batches of changes to PostgreSQL, one transaction per batch."""

    def __init__(self, dsn: str, workload: Workload):
        import psycopg2

        self.workload = workload
        self.conn = psycopg2.connect(dsn, application_name="cdc-bench")
        traffic.ensure_catalogue(self.conn, workload.catalogue)

    def close(self) -> None:
        self.conn.close()

    def write(self, n: int, result: LoadResult, record_rows: bool = False) -> float:
        """``n`` changes in one transaction; returns the wall-clock time right after COMMIT returned."""
        from psycopg2.extras import execute_values

        w = self.workload
        inserts, updates, deletes = w.split(n)
        with self.conn.cursor() as cur:
            rows = w.inserts(inserts)
            ids: list[int] = []
            if rows:
                ids = [r[0] for r in execute_values(cur, INSERT_SQL, rows, page_size=len(rows), fetch=True)]
            changed = w.updates(updates)
            if changed:
                execute_values(cur, UPDATE_SQL, changed, page_size=len(changed))
            gone = w.take_deletes(deletes)
            if gone:
                cur.execute(DELETE_SQL, (gone,))
        self.conn.commit()
        committed = time.time()
        w.inserted(rows, ids)
        result.inserts += len(rows)
        result.updates += len(changed)
        result.deletes += len(gone)
        result.transactions += 1
        result.commits.append((committed, len(rows) + len(changed) + len(gone)))
        if record_rows:
            for row_id in ids:
                result.row_commit[row_id] = committed
        return committed


def run_open_loop(writer: ChangeWriter, rate: float, total: int, *, tick_s: float = 0.01, max_batch: int = 500,
                  record_rows: bool = False, progress: Callable[[LoadResult, float], None] | None = None,
                  progress_every_s: float = 5.0) -> LoadResult:
    """Write ``total`` changes, row i due at start + i / rate (``rate`` 0: as fast as PostgreSQL takes them).

    Open loop: the schedule never waits on the pipeline; when the writer itself falls behind it
    writes larger transactions (up to ``max_batch``) and records how late it ran."""
    result = LoadResult(target_rate=rate, planned=total)
    result.started = time.time()
    schedule = OpenLoopSchedule(rate, total, result.started)
    written = 0
    next_progress = result.started + progress_every_s
    last_tx = 0.0
    while written < total:
        now = time.time()
        due = schedule.due(now)
        if due <= written or (rate > 0 and now - last_tx < tick_s and due - written < max_batch):
            wake = max(schedule.due_at(written), last_tx + tick_s) if rate > 0 else now
            time.sleep(max(0.0, min(wake - now, 0.5)))
            continue
        result.max_behind_s = max(result.max_behind_s, schedule.behind(now, written))
        last_tx = now
        batch = min(due - written, max_batch)
        writer.write(batch, result, record_rows=record_rows)
        written += batch
        if progress and time.time() >= next_progress:
            next_progress += progress_every_s
            progress(result, schedule.behind(time.time(), written))
    result.finished = time.time()
    return result


def planned_changes(rate: float, seconds: float) -> int:
    return max(1, math.floor(rate * seconds))


# --- normalized changes for the sinks' ceilings (no PostgreSQL, no Spark) ------------------

# schemas.CHANGE's fields, in order: what change_log.decode returns for an event change.
CHANGE_FIELDS = ("id", "op", "position", "source_ts_ms", "content_id", "user_id", "event_type", "event_ts",
                 "duration_ms", "device", "raw_payload", "length_seconds", "engagement_pct")


def normalized_change(row_id: int, op: str, position: int, source_ts_ms: int, event: dict,
                      length_seconds: int | None) -> dict:
    """One event change as the core query writes it and change_log.decode returns it: cleaned
    (lower-case ids, normalized event type and device), enriched (length, engagement_pct),
    event_ts in epoch microseconds. ``event``: a row as traffic.make_event makes it."""
    return {
        "id": row_id, "op": op, "position": position, "source_ts_ms": source_ts_ms,
        "content_id": event["content_id"].lower(), "user_id": event["user_id"].lower(),
        "event_type": semantics.normalize_event_type(event["event_type"]),
        "event_ts": semantics.epoch_micros(event["event_ts"]), "duration_ms": event["duration_ms"],
        "device": semantics.normalize_device(event["device"]), "raw_payload": event["raw_payload"],
        "length_seconds": length_seconds,
        "engagement_pct": semantics.engagement_pct(event["duration_ms"], length_seconds),
    }


@dataclass
class SinkLoad:
    changes: list[dict]                 # the measured changes, positions increasing
    cleanup: list[dict]                 # a delete per row the changes leave live, positions above them
    inserts: int = 0
    updates: int = 0
    deletes: int = 0

    def as_dict(self) -> dict:
        return {"changes": len(self.changes), "inserts": self.inserts, "updates": self.updates,
                "deletes": self.deletes, "cleanup_deletes": len(self.cleanup)}


def sink_changes(ids: range, catalogue: list[dict], users: list[str], *, base_position: int, now: datetime,
                 source_ts_ms: int, seed: int, update_share: float = 0.1, delete_share: float = 0.04) -> SinkLoad:
    """``len(ids)`` normalized changes for rows ``ids`` (taken in order by the inserts), in the
    backlog's mix (traffic.py's rows; updates and deletes of live rows; no bad rows, which never
    reach a sink). Change i has position ``base_position + i``; the cleanup deletes follow.
    ``now``: the latest event time (traffic.make_event spreads events over the 15 minutes before it)."""
    rng = random.Random(seed)
    lengths = {c["id"]: c["length_seconds"] for c in catalogue}
    load = SinkLoad([], [])
    fresh = iter(ids)
    live: list[int] = []
    image: dict[int, dict] = {}
    position = base_position
    for _ in range(len(ids)):
        roll = rng.random()
        if live and roll < delete_share:
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            row_id = live.pop()
            event = image.pop(row_id)
            load.changes.append(normalized_change(row_id, "d", position, source_ts_ms, event,
                                                  lengths.get(event["content_id"])))
            load.deletes += 1
        elif live and roll < delete_share + update_share:
            row_id = live[rng.randrange(len(live))]
            event = dict(image[row_id])
            device = traffic._pick(rng, traffic.DEVICE_MIX)  # noqa: SLF001 - as traffic's updates
            length = lengths.get(event["content_id"]) or 300
            event["duration_ms"] = int(traffic.watch_fraction(rng, device) * length * 1000)
            event["device"] = rng.choice(traffic.RAW_DEVICE_SPELLINGS[device])
            image[row_id] = event
            load.changes.append(normalized_change(row_id, "u", position, source_ts_ms, event,
                                                  lengths.get(event["content_id"])))
            load.updates += 1
        else:
            row_id = next(fresh)
            event, _ = traffic.make_event(rng, catalogue, users, now, bad_share=0)
            image[row_id] = event
            live.append(row_id)
            load.changes.append(normalized_change(row_id, "c", position, source_ts_ms, event,
                                                  lengths.get(event["content_id"])))
            load.inserts += 1
        position += 1
    for row_id in sorted(live):
        event = image[row_id]
        load.cleanup.append(normalized_change(row_id, "d", position, source_ts_ms, event,
                                              lengths.get(event["content_id"])))
        position += 1
    return load


def delete_every_row(changes: list[dict], first_position: int) -> list[dict]:
    """A delete for every row ``changes`` touch (their last image), positions from ``first_position``
    up: what undoes whatever part of them was applied (after a failure part-way)."""
    last: dict[int, dict] = {}
    for change in changes:
        last[change["id"]] = change
    return [{**change, "op": "d", "position": first_position + i}
            for i, (_, change) in enumerate(sorted(last.items()))]
