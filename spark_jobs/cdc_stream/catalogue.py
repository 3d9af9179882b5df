"""The content catalogue the core query enriches events with: content id -> length_seconds.

It lives on the driver and follows the content topic: rebuilt from the topic when the job starts
(the topic keeps every change forever), then updated with each micro-batch's content changes
before that batch's events are enriched. So enrichment depends on Kafka alone, never on a sink,
and a new content row is used as soon as the stream reads it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from pyspark.sql import DataFrame, SparkSession

from cdc_stream import schemas

log = logging.getLogger(__name__)

DELETE = "d"


@dataclass(frozen=True)
class Entry:
    position: int
    length_seconds: int | None
    deleted: bool


class ContentCatalogue:
    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._frame: DataFrame | None = None

    def __len__(self) -> int:
        return sum(1 for entry in self._entries.values() if not entry.deleted)

    def apply(self, changes: Iterable) -> int:
        """Apply content changes (id, op, position, length_seconds); the highest position wins,
        so replays and reordering are harmless. Returns how many entries changed."""
        changed = 0
        for change in changes:
            stored = self._entries.get(change["id"])
            if stored is not None and stored.position >= change["position"]:
                continue
            self._entries[change["id"]] = Entry(change["position"], change["length_seconds"],
                                                change["op"] == DELETE)
            changed += 1
        if changed and self._frame is not None:
            self._frame.unpersist()
            self._frame = None
        return changed

    def knows(self, content_id: str | None) -> bool:
        entry = self._entries.get(content_id) if content_id else None
        return entry is not None and not entry.deleted

    def frame(self, spark: SparkSession) -> DataFrame:
        """The catalogue as a cached lookup DataFrame (schemas.CONTENT_LOOKUP); rebuilt only after
        a change, so a batch without content changes reuses the cached one."""
        if self._frame is None:
            rows = [(cid, entry.length_seconds) for cid, entry in self._entries.items() if not entry.deleted]
            self._frame = spark.createDataFrame(rows, schemas.CONTENT_LOOKUP).cache()
        return self._frame

    def load(self, spark: SparkSession, bootstrap: str, topic: str) -> None:
        """Replay the whole content topic (one batch read) into the catalogue."""
        from cdc_stream import transforms

        records = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .option("endingOffsets", "latest")
            .load()
        )
        changes, _rejected = transforms.parse_content(records)
        self.apply(row.asDict() for row in changes.select("id", "op", "position", "length_seconds").collect())
        log.info("content catalogue: %d content rows from %s", len(self), topic)
