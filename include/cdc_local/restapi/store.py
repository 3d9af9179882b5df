"""Durable event storage: one SQLite file, keyed by idempotency key."""
from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cdc_platform.semantics import canonical_json

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    idempotency_key TEXT PRIMARY KEY,
    row_id INTEGER,
    position INTEGER,
    event TEXT NOT NULL,
    received_at TEXT NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS events_by_row ON events (row_id, position);
"""


def _int_field(event: dict[str, Any], name: str) -> int | None:
    value = event.get(name)
    # bool is an int subclass; a flag is not a row id.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _row(record: tuple) -> dict[str, Any]:
    key, row_id, position, event, received_at, deliveries = record
    return {
        "idempotency_key": key,
        "row_id": row_id,
        "position": position,
        "event": json.loads(event),
        "received_at": received_at,
        "deliveries": deliveries,
    }


class EventStore:
    """Stores each idempotency key once; a redelivery only bumps its ``deliveries`` counter.

    One connection guarded by a lock: the service is a single process, and SQLite
    serialises writers anyway. WAL lets readers proceed during a write, and
    synchronous=FULL makes an acknowledged batch survive a power loss.
    """

    _COLUMNS = "idempotency_key, row_id, position, event, received_at, deliveries"

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def ping(self) -> None:
        with self._lock:
            self._conn.execute("SELECT 1").fetchone()

    def insert_batch(self, items: list[tuple[str, dict[str, Any]]]) -> list[bool]:
        """Store the items in one transaction; per item, True if new, False if a duplicate."""
        received_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        results: list[bool] = []
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for key, event in items:
                    cur.execute(
                        "INSERT OR IGNORE INTO events (idempotency_key, row_id, position, event, received_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (key, _int_field(event, "id"), _int_field(event, "position"),
                         canonical_json(event), received_at),
                    )
                    inserted = cur.rowcount == 1
                    if not inserted:
                        cur.execute("UPDATE events SET deliveries = deliveries + 1 WHERE idempotency_key = ?", (key,))
                    results.append(inserted)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return results

    def count(self, prefix: str | None = None) -> int:
        with self._lock:
            if not prefix:
                return self._conn.execute("SELECT count(*) FROM events").fetchone()[0]
            # A key range on the primary key instead of LIKE: no wildcard escaping, uses the index.
            return self._conn.execute(
                "SELECT count(*) FROM events WHERE idempotency_key >= ? AND idempotency_key < ?",
                (prefix, prefix + "\U0010ffff"),
            ).fetchone()[0]

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM events WHERE idempotency_key = ?", (key,)
            ).fetchone()
        return _row(record) if record else None

    def by_row(self, row_id: int, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            records = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM events WHERE row_id = ? ORDER BY position LIMIT ?", (row_id, limit)
            ).fetchall()
        return [_row(r) for r in records]

    def by_row_range(self, row_min: int, row_max: int, limit: int) -> list[dict[str, Any]]:
        """Events of rows ``row_min`` to ``row_max`` (inclusive), by row then position."""
        with self._lock:
            records = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM events WHERE row_id BETWEEN ? AND ? ORDER BY row_id, position LIMIT ?",
                (row_min, row_max, limit),
            ).fetchall()
        return [_row(r) for r in records]

    def latest(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            records = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM events ORDER BY received_at DESC, idempotency_key LIMIT ?", (limit,)
            ).fetchall()
        return [_row(r) for r in records]
