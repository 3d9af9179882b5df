"""The content and core queries: each Debezium record is read, parsed, validated and enriched once.

The core query's transforms are part of its streaming plan (built once when the query starts;
Spark only re-plans it per micro-batch), enriching events through a stream-static join with the
content catalogue (``catalogue.ContentCatalogue``). Each micro-batch reaches ``CoreBatch`` as
finished records, one per source record: a change, a quarantined record or a waiting event,
each with its topic. The batch function counts them, writes them to Kafka in one job, and keeps
the waiting room: events read before their content row are parked, and released (run through
the same transforms) once their content is known or their wait has expired.

The content query turns content changes into the normalized content topic the same way.
The sink queries read what these queries wrote, so both depend on Kafka alone: no sink's
outage can stop them, and they never wait on a sink.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdc_stream import change_log, schemas, transforms
from cdc_stream import quarantine as Q
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
    # Seconds per step of the batch: where a slow batch spends its time.
    steps: dict[str, float] = field(default_factory=dict)


def core_records(source: DataFrame, content_lookup: DataFrame, topics: CoreTopics) -> DataFrame:
    """Source records (Kafka source columns or schemas.SOURCE_RECORD; streaming or not) -> the
    records the core query writes (change_log.OUTPUT_COLUMNS). Records of other topics than the
    events topic only start a micro-batch (see job.core_source_topics). One pass, so a streaming
    plan built from it reads its Kafka source once."""
    events = source.filter(F.col("topic") == F.lit(topics.events))
    classified = transforms.classify_events(events, content_lookup)
    return change_log.event_records(classified, changes_topic=topics.event_changes,
                                    quarantine_topic=topics.quarantine, pending_topic=topics.pending)


def content_records(content: DataFrame, topics: CoreTopics) -> DataFrame:
    """Records of the content topic -> content changes and quarantined content records."""
    content_changes, content_rejected = transforms.parse_content(content)
    return (change_log.content_change_records(content_changes, topics.content_changes)
            .unionByName(change_log.quarantine_records(content_rejected, topics.quarantine)))


def observed_counts(topics: CoreTopics) -> list[Column]:
    """What a batch of output records (change_log.OUTPUT_COLUMNS) is counted by: Spark computes
    these while it writes the batch (``DataFrame.observe``), with no job of their own."""
    topic, reason = F.col("topic"), F.col("reason")
    return [
        F.count_if(topic == F.lit(topics.event_changes)).alias("changes"),
        F.count_if(topic == F.lit(topics.content_changes)).alias("content_changes"),
        F.count_if(topic == F.lit(topics.pending)).alias("parked"),
        F.max("position").alias("max_position"),
        *(F.count_if(reason == F.lit(r)).alias(f"quarantined.{r}") for r in Q.REASONS),
    ]


def apply_counts(report: "CoreReport", counts: dict) -> None:
    """Add ``observed_counts`` (one row, as a dict) to ``report``."""
    report.changes += counts.get("changes") or 0
    report.content_changes += counts.get("content_changes") or 0
    report.parked += counts.get("parked") or 0
    if counts.get("max_position") is not None:
        report.max_position = max(report.max_position or 0, counts["max_position"])
    for name, value in counts.items():
        if name.startswith("quarantined.") and value:
            reason = name.removeprefix("quarantined.")
            report.quarantined[reason] = report.quarantined.get(reason, 0) + value


class RecordWriter:
    """Writes a micro-batch's output records (change_log.OUTPUT_COLUMNS) to Kafka."""

    def __init__(self, kafka_options: dict[str, str], topics: CoreTopics,
                 producer_options: dict[str, str] | None = None):
        """``kafka_options``: the connection's, as Spark's Kafka sink takes them
        (kafka_options.spark_kafka_options); ``producer_options``: this writer's own, unprefixed."""
        self.kafka_options = kafka_options
        self.topics = topics
        self.producer_options = producer_options or {}

    def write(self, records: DataFrame) -> None:
        """One job: the records go to their topics."""
        writer = records.select("topic", "key", "value").write.format("kafka").options(**self.kafka_options)
        for option, value in self.producer_options.items():
            writer = writer.option(f"kafka.{option}", value)
        writer.save()

    def write_counted(self, records: DataFrame, report: "CoreReport") -> list[str]:
        """Count ``records`` into ``report`` (a job of its own), write them, and return the
        values of those parked in the waiting room. For the small batches of the content query
        and of released events; the core query's own batches are counted by observe()."""
        records = records.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            [counts] = records.agg(*observed_counts(self.topics)).collect()
            apply_counts(report, counts.asDict())
            if any(value for name, value in counts.asDict().items() if name != "max_position"):
                self.write(records)
            if not counts.parked:
                return []
            return [row.value for row in records.filter(F.col("topic") == F.lit(self.topics.pending))
                    .select("value").collect()]
        finally:
            records.unpersist()


class ContentBatch:
    """The foreachBatch function of the content query: content changes, parsed once."""

    def __init__(self, writer: RecordWriter):
        self.writer = writer

    def __call__(self, batch_df: DataFrame, batch_id: int) -> "CoreReport":
        started = time.monotonic()
        batch_df.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", "content")
        report = CoreReport(batch_id)
        self.writer.write_counted(content_records(batch_df, self.writer.topics), report)
        report.duration_s = round(time.monotonic() - started, 3)
        return report


class CoreBatch:
    """The foreachBatch function of the core query; ``batch_df`` holds ``core_records``."""

    def __init__(self, writer: RecordWriter, catalogue: ContentCatalogue, waiting: WaitingRoom):
        self.writer = writer
        self.catalogue = catalogue
        self.waiting = waiting

    def __call__(self, batch_df: DataFrame, batch_id: int) -> CoreReport:
        """The batch's own counts are not in the returned report: Spark observes them while it
        writes, and reports them with the batch's progress (see ``observed_counts``)."""
        started = time.monotonic()
        spark = batch_df.sparkSession
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", "core")
        report = CoreReport(batch_id)
        clock = _StepClock(report.steps)
        mark = self.waiting.end_offsets()
        self.writer.write(batch_df)
        parked = self.waiting.parked_since(mark)
        clock.lap("write")
        if self.catalogue.refresh():
            clock.lap("catalogue")
        now_ms = int(time.time() * 1000)
        self.waiting.park(parked, now_ms)
        # Parked by this batch and known already: their content arrived after this batch's plan
        # was made, or after the last refresh. Released at once, not one batch later.
        released = self.waiting.due(self.catalogue.known_ids.__contains__, now_ms) if len(self.waiting) else []
        parked_again = []
        if released:
            rows = [e.source_record(expired=self.waiting.is_expired(e, now_ms)) for e in released]
            again = core_records(spark.createDataFrame(rows, schemas.SOURCE_RECORD), self.catalogue.frame,
                                 self.writer.topics)
            parked_again = self.writer.write_counted(again, report)
            clock.lap("release")
        report.resolved = self.waiting.settle(released, parked_again, now_ms)
        report.released, report.waiting = len(released), len(self.waiting)
        oldest = self.waiting.oldest_since_ms()
        report.oldest_waiting_s = None if oldest is None else round((now_ms - oldest) / 1000, 1)
        report.duration_s = round(time.monotonic() - started, 3)
        return report


class _StepClock:
    def __init__(self, steps: dict[str, float]):
        self.steps = steps
        self.last = time.monotonic()

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.steps[step] = round(now - self.last, 3)
        self.last = now
