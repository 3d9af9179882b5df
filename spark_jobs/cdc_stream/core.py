"""The core query: each Debezium record is read, parsed, validated and enriched exactly once.

Per micro-batch (the batch's records are cached once, then):
1. content changes are collected and applied to the driver's content catalogue;
2. events, plus the waiting events that are now due, go through the transforms against it;
3. changes, content changes and quarantined records are written to Kafka in one job;
4. events still without content are parked in the waiting room.
The sink queries read what step 3 wrote, so the core query depends on Kafka alone: no sink's
outage can stop it, and it never waits on a sink.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cdc_stream import change_log, schemas, transforms
from cdc_stream.catalogue import ContentCatalogue
from cdc_stream.waiting_room import WaitingRoom

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreTopics:
    events: str
    content: str
    event_changes: str
    content_changes: str
    quarantine: str
    pending: str


@dataclass
class CoreReport:
    batch_id: int
    records: int = 0
    changes: int = 0
    content_changes: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    released: int = 0
    parked: int = 0
    resolved: int = 0
    waiting: int = 0
    oldest_waiting_s: float | None = None
    max_position: int | None = None
    duration_s: float = 0.0


class CoreProcessor:
    """The foreachBatch function of the core query."""

    def __init__(self, bootstrap: str, topics: CoreTopics, catalogue: ContentCatalogue, waiting: WaitingRoom,
                 producer_options: dict[str, str] | None = None):
        self.bootstrap = bootstrap
        self.topics = topics
        self.catalogue = catalogue
        self.waiting = waiting
        self.producer_options = producer_options or {}
        self.quarantined_total: Counter[str] = Counter()

    def __call__(self, batch_df: DataFrame, batch_id: int) -> CoreReport:
        started = time.monotonic()
        spark = batch_df.sparkSession
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", "core")
        records = transforms.source_records(batch_df).persist(StorageLevel.MEMORY_AND_DISK)
        cached: list[DataFrame] = [records]
        try:
            report = self._process(spark, records, batch_id, cached)
        finally:
            for df in cached:
                df.unpersist()
        report.duration_s = round(time.monotonic() - started, 3)
        self.quarantined_total.update(report.quarantined)
        return report

    def _process(self, spark, records: DataFrame, batch_id: int, cached: list[DataFrame]) -> CoreReport:
        report = CoreReport(batch_id)
        content_changes, content_rejected = transforms.parse_content(
            records.filter(F.col("topic") == F.lit(self.topics.content)))
        content_rows = content_changes.select("id", "op", "position", "length_seconds").collect()
        self.catalogue.apply(row.asDict() for row in content_rows)

        now_ms = int(time.time() * 1000)
        released = self.waiting.due(self.catalogue.knows, now_ms)
        events = records.filter(F.col("topic") == F.lit(self.topics.events))
        if released:
            rows = [e.source_record(expired=self.waiting.is_expired(e, now_ms)) for e in released]
            events = events.unionByName(spark.createDataFrame(rows, schemas.SOURCE_RECORD))
        batch = transforms.process_events(events, self.catalogue.frame(spark))

        output = (
            change_log.event_change_records(batch.changes, self.topics.event_changes)
            .unionByName(change_log.content_change_records(content_changes, self.topics.content_changes))
            .unionByName(change_log.quarantine_records(batch.quarantine.unionByName(content_rejected),
                                                       self.topics.quarantine))
            .unionByName(change_log.waiting_records(batch.waiting, self.topics.pending))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        cached.append(output)
        parked_count = 0
        for row in output.groupBy("topic", "reason").agg(
                F.count(F.lit(1)).alias("n"), F.max("position").alias("max_position")).collect():
            if row.topic == self.topics.event_changes:
                report.changes, report.max_position = row.n, row.max_position
            elif row.topic == self.topics.content_changes:
                report.content_changes = row.n
            elif row.topic == self.topics.pending:
                parked_count = row.n
            else:
                report.quarantined[row.reason] = row.n
        if report.changes or report.content_changes or report.quarantined or parked_count:
            writer = output.select("topic", "key", "value").write.format("kafka")
            for option, value in self.producer_options.items():
                writer = writer.option(f"kafka.{option}", value)
            writer.option("kafka.bootstrap.servers", self.bootstrap).save()

        parked = []
        if parked_count:
            parked = [row.value for row in output.filter(F.col("topic") == F.lit(self.topics.pending))
                      .select("value").collect()]
        report.parked = len(parked)
        report.resolved = self.waiting.settle(released, parked, now_ms)
        report.released = len(released)
        report.waiting = len(self.waiting)
        oldest = self.waiting.oldest_since_ms()
        report.oldest_waiting_s = None if oldest is None else round((now_ms - oldest) / 1000, 1)
        return report
