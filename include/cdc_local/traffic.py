"""Sample traffic: a content catalogue, users, and engagement events written to PostgreSQL.

Deterministic for a given --seed. Device behaviour follows the seed's insights:
mobile is extreme (bounces or binges), desktop moderate, tablet high commitment.
A small share of records is bad on purpose (negative duration, far-future timestamp,
missing content) so the quarantine has something to show.

    python -m cdc_local.traffic --events 2000 --rate 250 --seed 7
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from cdc_platform import names

DEVICE_MIX = (("mobile", 0.42), ("desktop", 0.30), ("tablet", 0.18), ("tv", 0.07), ("other", 0.03))
RAW_DEVICE_SPELLINGS = {
    "mobile": ("mobile", "iPhone", "Android", "MOBILE", "phone"),
    "desktop": ("desktop", "Desktop", "web", "laptop"),
    "tablet": ("tablet", "iPad", "Tablet"),
    "tv": ("tv", "Smart TV", "roku"),
    "other": ("console", "car", None),
}
EVENT_MIX = (("play", 0.45), ("pause", 0.15), ("seek", 0.1), ("finish", 0.2), ("like", 0.05), ("share", 0.05))
CONTENT_TYPES = ("video", "podcast", "article_audio", "short")
BAD_KINDS = ("negative_duration", "future_event_ts", "missing_content")


@dataclass
class TrafficStats:
    content: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    bad: dict[str, int] = field(default_factory=lambda: {k: 0 for k in BAD_KINDS})
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"content": self.content, "inserts": self.inserts, "updates": self.updates,
                "deletes": self.deletes, "bad": dict(self.bad), "seconds": round(self.seconds, 2)}


def _pick(rng: random.Random, weighted) -> str:
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def watch_fraction(rng: random.Random, device: str) -> float:
    """Share of the content watched; may exceed 1 (replays), which the stream caps."""
    if device == "mobile":
        return rng.uniform(0.0, 0.08) if rng.random() < 0.5 else rng.uniform(0.92, 1.1)
    if device == "desktop":
        return min(max(rng.gauss(0.5, 0.12), 0.15), 0.85)
    if device == "tablet":
        return rng.uniform(0.75, 1.05)
    if device == "tv":
        return rng.uniform(0.6, 1.0)
    return rng.uniform(0.0, 1.0)


def make_catalogue(rng: random.Random, size: int, now: datetime) -> list[dict]:
    catalogue = []
    for i in range(size):
        catalogue.append({
            "id": _uuid(rng),
            "slug": f"content-{i:03d}",
            "title": f"Sample content {i:03d}",
            "content_type": rng.choice(CONTENT_TYPES),
            # A few items have no length: their engagement_pct is undefined (null).
            "length_seconds": None if i % 17 == 16 else rng.choice((30, 60, 120, 300, 600, 1800)),
            "publish_ts": now - timedelta(days=rng.randint(1, 400)),
        })
    return catalogue


def make_event(rng: random.Random, catalogue: list[dict], users: list[str], now: datetime,
               bad_share: float) -> tuple[dict, str | None]:
    content = rng.choice(catalogue)
    device = _pick(rng, DEVICE_MIX)
    length = content["length_seconds"] or 300
    event = {
        "content_id": content["id"],
        "user_id": rng.choice(users),
        "event_type": _pick(rng, EVENT_MIX),
        "event_ts": now - timedelta(seconds=rng.uniform(0, 900)),
        "duration_ms": int(watch_fraction(rng, device) * length * 1000),
        "device": rng.choice(RAW_DEVICE_SPELLINGS[device]),
    }
    bad = rng.choice(BAD_KINDS) if rng.random() < bad_share else None
    if bad == "negative_duration":
        event["duration_ms"] = -rng.randint(1, 50_000)
    elif bad == "future_event_ts":
        event["event_ts"] = now + timedelta(days=rng.randint(2, 30))
    elif bad == "missing_content":
        event["content_id"] = None
    event["raw_payload"] = json.dumps({"app_version": f"5.{rng.randint(0, 9)}", "session": _uuid(rng)[:8],
                                       "device_raw": event["device"]})
    return event, bad


def ensure_catalogue(conn, catalogue: list[dict]) -> int:
    with conn.cursor() as cur:
        for c in catalogue:
            cur.execute(
                f"INSERT INTO {names.PG_CONTENT_TABLE} (id, slug, title, content_type, length_seconds, publish_ts) "
                "VALUES (%(id)s, %(slug)s, %(title)s, %(content_type)s, %(length_seconds)s, %(publish_ts)s) "
                "ON CONFLICT (id) DO NOTHING", c)
    conn.commit()
    return len(catalogue)


def run(dsn: str, events: int, rate: float, seed: int, content_count: int = 24, user_count: int = 300,
        update_share: float = 0.1, delete_share: float = 0.04, bad_share: float = 0.02,
        progress_every: int = 500, out=sys.stdout, catalogue_seed: int | None = None) -> TrafficStats:
    """``catalogue_seed`` (default: ``seed``) fixes content and users, so runs with different
    seeds can write events for the same catalogue."""
    import psycopg2

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    catalogue_rng = random.Random(seed if catalogue_seed is None else catalogue_seed)
    catalogue = make_catalogue(catalogue_rng, content_count, now)
    users = [_uuid(catalogue_rng) for _ in range(user_count)]
    rng = random.Random(seed) if catalogue_seed is not None and catalogue_seed != seed else catalogue_rng
    stats = TrafficStats()
    started = time.monotonic()
    conn = psycopg2.connect(dsn)
    try:
        stats.content = ensure_catalogue(conn, catalogue)
        live_ids: list[int] = []
        batch = max(1, int(rate // 10)) if rate > 0 else 100
        with conn.cursor() as cur:
            for n in range(1, events + 1):
                roll = rng.random()
                if live_ids and roll < delete_share:
                    row_id = live_ids.pop(rng.randrange(len(live_ids)))
                    cur.execute(f"DELETE FROM {names.PG_EVENTS_TABLE} WHERE id = %s", (row_id,))
                    stats.deletes += 1
                elif live_ids and roll < delete_share + update_share:
                    row_id = rng.choice(live_ids)
                    device = _pick(rng, DEVICE_MIX)
                    cur.execute(
                        f"UPDATE {names.PG_EVENTS_TABLE} e SET duration_ms = (%s * COALESCE(c.length_seconds, 300)"
                        " * 1000)::int, device = %s FROM content c WHERE e.id = %s AND c.id = e.content_id",
                        (watch_fraction(rng, device), rng.choice(RAW_DEVICE_SPELLINGS[device]), row_id))
                    stats.updates += 1
                else:
                    event, bad = make_event(rng, catalogue, users, now, bad_share)
                    cur.execute(
                        f"INSERT INTO {names.PG_EVENTS_TABLE} (content_id, user_id, event_type, event_ts, "
                        "duration_ms, device, raw_payload) VALUES (%(content_id)s, %(user_id)s, %(event_type)s, "
                        "%(event_ts)s, %(duration_ms)s, %(device)s, %(raw_payload)s) RETURNING id", event)
                    live_ids.append(cur.fetchone()[0])
                    stats.inserts += 1
                    if bad:
                        stats.bad[bad] += 1
                if n % batch == 0:
                    conn.commit()
                    if rate > 0:
                        lag = n / rate - (time.monotonic() - started)
                        if lag > 0:
                            time.sleep(lag)
                if progress_every and n % progress_every == 0:
                    elapsed = time.monotonic() - started
                    print(f"    traffic: {n}/{events} changes ({n / elapsed:.0f}/s)", file=out, flush=True)
        conn.commit()
    finally:
        conn.close()
    stats.seconds = time.monotonic() - started
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("PG_DSN"), help="PostgreSQL DSN (default: $PG_DSN)")
    parser.add_argument("--events", type=int, default=2000, help="number of changes to write")
    parser.add_argument("--rate", type=float, default=250, help="changes per second (0 = as fast as possible)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--content", type=int, default=24, help="catalogue size")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--update-share", type=float, default=0.1)
    parser.add_argument("--delete-share", type=float, default=0.04)
    parser.add_argument("--bad-share", type=float, default=0.02)
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("no DSN: pass --dsn or source .stack/env (PG_DSN)")
    stats = run(args.dsn, args.events, args.rate, args.seed, args.content, args.users,
                args.update_share, args.delete_share, args.bad_share)
    print(json.dumps(stats.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
