"""The core query: each Debezium record is read, parsed, validated and enriched once, and each
change reaches every sink in the micro-batch that read it.

The transforms are part of the core query's streaming plan (built once when the query starts;
Spark only re-plans it per micro-batch), enriching events through a stream-static join with the
content catalogue (``catalogue.ContentCatalogue``). Each micro-batch reaches ``CoreBatch`` as
finished records, one per source record: an event change, a content change, a quarantined
record or a waiting event, each with its topic. The batch function hands them to the fan-out
(``fanout``), which writes them to their topics and to the live sinks in one Spark job, and
keeps the waiting room: events read before their content row are parked, and released (run
through the same transforms) once their content is known or their wait has expired.

The topics hold the change log a sink that fell behind is caught up from (``catchup``): no
sink's outage stops the core query, and it never waits on a sink longer than the sink's budget.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame

from cdc_stream import change_log, schemas, transforms
from cdc_stream.catalogue import ContentCatalogue
from cdc_stream.fanout import FanoutPlan, fan_out
from cdc_stream.waiting_room import WaitingEvent, WaitingRoom

if TYPE_CHECKING:
    from cdc_stream.catchup import SinkLedger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoreTopics:
    events: str
    content: str
    event_changes: str
    content_changes: str
    quarantine: str
    pending: str
    # Normalized changes written by the platform's repairs: they pass as event changes.
    repairs: str | None = None


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
    # How long the adaptive trigger held the query after this batch (QuietTrigger).
    held_s: float = 0.0
    # Per sink written by this batch: ok, seconds, its writer's counts (and the error when not ok).
    sinks: dict[str, dict] = field(default_factory=dict)
    # Sinks the batches do not write now: their catch-up queries replay the change log.
    behind: list[str] = field(default_factory=list)
    # Seconds per step of the batch: where a slow batch spends its time.
    steps: dict[str, float] = field(default_factory=dict)


def core_records(source: DataFrame, content_lookup: DataFrame, topics: CoreTopics) -> DataFrame:
    """Source records (Kafka source columns or schemas.SOURCE_RECORD; streaming or not) -> the
    records the core query writes (change_log.OUTPUT_COLUMNS). Records of the content topic pass
    as their source record, under the content topic's name (``content_records`` processes them);
    those of the repairs topic, normalized changes already, pass as event changes.
    One pass, so a streaming plan built from it reads its Kafka source once: a second branch for
    the content topic would read every record of the batch again, through a Kafka consumer of its own."""
    classified = transforms.classify_events(source, content_lookup)
    return change_log.event_records(classified, changes_topic=topics.event_changes,
                                    quarantine_topic=topics.quarantine, pending_topic=topics.pending,
                                    passed_topic=topics.content, repairs_topic=topics.repairs)


def content_records(content: DataFrame, topics: CoreTopics) -> DataFrame:
    """Records of the content topic -> content changes and quarantined content records."""
    content_changes, content_rejected = transforms.parse_content(content)
    return (change_log.content_change_records(content_changes, topics.content_changes)
            .unionByName(change_log.quarantine_records(content_rejected, topics.quarantine)))


class CoreBatch:
    """The foreachBatch function of the core query; ``batch_df`` holds ``core_records``.

    One hop: the batch's records go to their topics and to every sink the ledger has live, in
    one Spark job (``fanout``); then the waiting room releases what this batch made known, and
    a sink that failed is recorded as behind before the batch commits."""

    def __init__(self, plan: FanoutPlan, catalogue: ContentCatalogue, waiting: WaitingRoom, sinks: "SinkLedger",
                 quiet: "QuietTrigger | None" = None):
        self.plan = plan
        self.catalogue = catalogue
        self.waiting = waiting
        self.sinks = sinks
        self.quiet = quiet

    @property
    def topics(self) -> CoreTopics:
        return self.plan.topics

    def __call__(self, batch_df: DataFrame, batch_id: int) -> CoreReport:
        started = time.monotonic()
        spark = batch_df.sparkSession
        report = CoreReport(batch_id)
        clock = _StepClock(report.steps)
        plan = dataclasses.replace(self.plan, sinks=self.sinks.written_by_batches())
        result = fan_out(batch_df, plan)
        clock.lap("fan_out")
        report.steps.update({f"task_{step}": seconds for step, seconds in result.task_steps.items()})
        now_ms = int(time.time() * 1000)
        if result.passed:
            # Content changes: rare next to events, so their transforms are built for the
            # batches that have some.
            rows = [WaitingEvent.from_json(text, now_ms).source_record(expired=False) for text in result.passed]
            content = content_records(spark.createDataFrame(rows, schemas.SOURCE_RECORD), self.topics)
            result.merge(fan_out(content, plan))
            clock.lap("content")
        if result.counts.get(self.topics.content_changes) and self.catalogue.refresh():
            clock.lap("catalogue")
        self.waiting.park(result.parked, now_ms)
        # Parked by this batch and known already: their content arrived in this batch, or after
        # the last refresh. Released at once, not one batch later.
        released = self.waiting.due(self.catalogue.known_ids.__contains__, now_ms) if len(self.waiting) else []
        parked_again: list[str] = []
        if released:
            rows = [e.source_record(expired=self.waiting.is_expired(e, now_ms)) for e in released]
            again = core_records(spark.createDataFrame(rows, schemas.SOURCE_RECORD), self.catalogue.frame, self.topics)
            released_result = fan_out(again, plan)
            parked_again = released_result.parked
            result.merge(released_result)
            clock.lap("release")
        report.resolved = self.waiting.settle(released, parked_again, now_ms)
        self.sinks.settle(result, plan.sinks, batch_id)
        clock.lap("ledger")
        report.changes = result.counts.get(self.topics.event_changes, 0)
        report.content_changes = result.counts.get(self.topics.content_changes, 0)
        report.parked = result.counts.get(self.topics.pending, 0)
        report.quarantined = dict(result.quarantined)
        report.max_position = result.max_position
        report.sinks = {name: {"ok": o.ok, "seconds": o.seconds, **({"error": o.error} if o.error else {}),
                               **o.stats} for name, o in result.sinks.items()}
        report.behind = sorted(set(self.plan.sinks) - set(self.sinks.written_by_batches()))
        report.released, report.waiting = len(released), len(self.waiting)
        oldest = self.waiting.oldest_since_ms()
        report.oldest_waiting_s = None if oldest is None else round((now_ms - oldest) / 1000, 1)
        report.duration_s = round(time.monotonic() - started, 3)
        if self.quiet is not None:
            report.held_s = self.quiet.hold(started, report.changes + report.content_changes)
        return report


class QuietTrigger:
    """Holds the core query after a small batch, so that the next batch starts ``seconds`` after
    this one started (the adaptive part of the trigger; see JobConfig.quiet_trigger_seconds).
    The changes of a held batch are already in every sink: holding delays only what arrives next.
    A stop request ends the hold at once."""

    def __init__(self, seconds: float, small_batch_changes: int, stopping: threading.Event):
        self.seconds = seconds
        self.small_batch_changes = small_batch_changes
        self.stopping = stopping

    def hold(self, started: float, changes: int) -> float:
        if changes >= self.small_batch_changes:
            return 0.0
        wait = self.seconds - (time.monotonic() - started)
        if wait > 0:
            self.stopping.wait(wait)
            return round(wait, 3)
        return 0.0


class _StepClock:
    def __init__(self, steps: dict[str, float]):
        self.steps = steps
        self.last = time.monotonic()

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.steps[step] = round(now - self.last, 3)
        self.last = now
