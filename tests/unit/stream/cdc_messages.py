"""Debezium-shaped change messages (JsonConverter, schemas disabled), as the connector emits them."""
from __future__ import annotations

import json
from datetime import datetime, timezone

CONTENT_ID = "6f1c1d9e-2a3b-4c5d-8e9f-0a1b2c3d4e5f"
USER_ID = "0b6c3f1e-9d8a-4b7c-a6e5-d4c3b2a1f0e9"


from cdc_platform.semantics import epoch_micros


def event_row(row_id: int, *, content_id: str | None = CONTENT_ID, user_id: str | None = USER_ID,
              event_type: str | None = "play", event_ts: datetime | None = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc),
              duration_ms: int | None = 30_000, device: str | None = "mobile",
              raw_payload: str | None = '{"source": "test"}') -> dict:
    return {
        "id": row_id, "content_id": content_id, "user_id": user_id, "event_type": event_type,
        "event_ts": None if event_ts is None else epoch_micros(event_ts), "duration_ms": duration_ms, "device": device,
        "raw_payload": raw_payload,
    }


def content_row(content_id: str = CONTENT_ID, *, length_seconds: int | None = 60, slug: str = "intro",
                title: str = "Intro", content_type: str = "video",
                publish_ts: datetime = datetime(2025, 12, 1, tzinfo=timezone.utc)) -> dict:
    return {
        "id": content_id, "slug": slug, "title": title, "content_type": content_type,
        "length_seconds": length_seconds, "publish_ts": epoch_micros(publish_ts),
    }


def envelope(op: str, *, before: dict | None = None, after: dict | None = None, lsn: int | None = 1000,
             table: str = "engagement_events", ts_ms: int = 1_767_268_800_000) -> dict:
    return {
        "before": before,
        "after": after,
        "source": {
            "version": "3.0.0.Final", "connector": "postgresql", "name": "engagement_project1",
            "ts_ms": ts_ms, "snapshot": "true" if op == "r" else "false", "db": "engagement_db",
            "sequence": json.dumps([None, str(lsn)]), "schema": "public", "table": table,
            "txId": 777, "lsn": lsn, "xmin": None,
        },
        "op": op,
        "ts_ms": ts_ms + 5,
    }


def insert(row: dict, lsn: int, **kw) -> dict:
    return envelope("c", after=row, lsn=lsn, **kw)


def update(before: dict, after: dict, lsn: int, **kw) -> dict:
    return envelope("u", before=before, after=after, lsn=lsn, **kw)


def delete(before: dict, lsn: int, **kw) -> dict:
    return envelope("d", before=before, lsn=lsn, **kw)


def snapshot_read(row: dict, lsn: int, **kw) -> dict:
    return envelope("r", after=row, lsn=lsn, **kw)


def encode(obj) -> bytes | None:
    """A message part as Kafka bytes: dicts as JSON, str as-is (for malformed input), None stays None."""
    if obj is None:
        return None
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if isinstance(obj, str):
        return obj.encode()
    return json.dumps(obj).encode()
