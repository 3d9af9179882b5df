"""One hop per change: the core query's output records are written to their topics and to every
live sink by the same Spark tasks, in the micro-batch that read them.

Each task (``fan_out_partition``, run by ``mapInArrow``) receives its partition's output records
(change_log.OUTPUT_COLUMNS) as Arrow batches and:

- produces every record to its topic (the normalized change log, the quarantine, the waiting
  room), noting the first offset it wrote per partition: where a sink that falls behind in this
  batch must be caught up from;
- decodes each change once and hands the decoded changes to every live sink's ``write_changes``,
  the sinks concurrently, each on its own thread and within its time budget;
- waits until Kafka has acknowledged every record (a record not acknowledged fails the task,
  and Spark re-runs the batch; every sink is idempotent by source position);
- returns one report row (counts, each sink's outcome, first offsets) and the values of the
  events it parked in the waiting room.

A sink that raises or outlives its budget does not fail the batch: its outcome says so, and the
driver records the sink as behind (``ledger``), to be caught up from the change log by its own
reader while the other sinks go on. A sink thread that outlives its budget is left to finish on
its own (its clients time out); what it writes meanwhile is harmless, for the same reason.
"""
from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from cdc_platform import semantics
from cdc_platform.kafka_clients import client_config
from cdc_stream import change_log
from cdc_stream.config import SinkBudget
from cdc_stream.python_worker import freeze_heap_once

log = logging.getLogger(__name__)

SINK_MODULES = {
    "cassandra": "cdc_stream.cassandra_sink",
    "redis": "cdc_stream.redis_sink",
    "rest": "cdc_stream.rest_sink",
}
# The sinks that keep the content table (the others take only event changes).
CONTENT_SINKS = frozenset({"cassandra"})
# What a fan-out task returns: one report row (kind REPORT, its JSON) and a row per parked event.
RESULT_SCHEMA = "kind string, text string"
REPORT, PARKED, PASSED = "report", "parked", "passed"
# Written records are batched briefly: one produce request per partition instead of one per
# record. murmur2 is the Java client's partitioner, so a row's records land where Spark's own
# Kafka writer (and Debezium) would put them.
PRODUCER_OPTIONS = {"linger.ms": 5, "batch.size": 262144, "enable.idempotence": True,
                    "partitioner": "murmur2_random", "message.max.bytes": semantics.MAX_MESSAGE_BYTES,
                    "queue.buffering.max.messages": 1_000_000, "log_level": 0}
FLUSH_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class FanoutPlan:
    """What a fan-out task needs; small and picklable (it travels inside the task closure)."""
    topics: Any  # core.CoreTopics
    settings: Any  # config.SinkSettings
    sinks: tuple[str, ...]
    budget: SinkBudget = SinkBudget()


@dataclass
class SinkOutcome:
    ok: bool = True
    error: str | None = None
    over_budget: bool = False
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)


# One producer per Python process and Kafka config, shared by its tasks.
_producers: dict[tuple, Any] = {}
_producers_lock = threading.Lock()


def _producer(kafka: dict):
    key = tuple(sorted(kafka.items()))
    with _producers_lock:
        producer = _producers.get(key)
        if producer is None:
            from confluent_kafka import Producer

            producer = Producer(client_config(kafka, PRODUCER_OPTIONS))
            _producers[key] = producer
        return producer


class _LogWrites:
    """Delivery reports of one task's records: the first offset per partition, and any error."""

    def __init__(self) -> None:
        self.first: dict[str, dict[int, int]] = {}
        self.errors: list[str] = []
        self.acknowledged = 0
        self._lock = threading.Lock()

    def __call__(self, error, message) -> None:
        with self._lock:
            if error is not None:
                self.errors.append(str(error))
                return
            self.acknowledged += 1
            partitions = self.first.setdefault(message.topic(), {})
            offset = message.offset()
            if message.partition() not in partitions or offset < partitions[message.partition()]:
                partitions[message.partition()] = offset


def _produce_all(producer, records: list[tuple[str, str | None, str]], writes: _LogWrites) -> None:
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=writes)
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: let deliveries drain it
        producer.poll(0)


def _run_sink(name: str, changes: list[dict], contents: list[dict], settings, outcome: SinkOutcome) -> None:
    started = time.monotonic()
    try:
        module = importlib.import_module(SINK_MODULES[name])
        result = module.write_changes(changes, contents if name in CONTENT_SINKS else (), settings)
        outcome.stats = result.__dict__.copy() if hasattr(result, "__dict__") else {"result": str(result)}
    except Exception as exc:  # noqa: BLE001 - a sink's failure is its own, never the batch's
        outcome.ok = False
        outcome.error = f"{type(exc).__name__}: {exc}"
        log.warning("fan-out: sink %s failed: %s\n%s", name, outcome.error, traceback.format_exc(limit=5))
    finally:
        outcome.seconds = round(time.monotonic() - started, 3)


def fan_out_rows(rows: Iterable[tuple[str, str | None, str | None, str | None, int | None]],
                 plan: FanoutPlan) -> tuple[dict, list[str], list[str]]:
    """One task's work on its output records (topic, key, value, reason, position): the report
    (a JSON-ready dict), the values of the events it parked, and the content topic's records
    it passed on."""
    topics = plan.topics
    started, cpu_started = time.monotonic(), time.process_time()
    steps: dict[str, float] = {}
    records: list[tuple[str, str | None, str]] = []
    changes: list[dict] = []
    contents: list[dict] = []
    parked: list[str] = []
    passed: list[str] = []
    counts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    max_position = None
    for topic, key, value, reason, position in rows:
        if value is None:
            continue
        if topic == topics.content:
            # A source record of the content topic, for the driver (core.core_records): no output.
            passed.append(value)
            continue
        records.append((topic, key, value))
        counts[topic] = counts.get(topic, 0) + 1
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
        if position is not None and (max_position is None or position > max_position):
            max_position = position
        if topic == topics.event_changes:
            changes.append(change_log.decode(value))
        elif topic == topics.content_changes:
            contents.append(change_log.decode(value))
        elif topic == topics.pending:
            parked.append(value)

    steps["read"] = time.monotonic() - started
    writes = _LogWrites()
    producer = _producer(plan.settings.kafka) if records else None
    if producer is not None:
        _produce_all(producer, records, writes)

    outcomes: dict[str, SinkOutcome] = {}
    threads: dict[str, threading.Thread] = {}
    for name in plan.sinks:
        outcomes[name] = SinkOutcome()
        if not changes and not (contents and name in CONTENT_SINKS):
            continue
        thread = threading.Thread(target=_run_sink, args=(name, changes, contents, plan.settings, outcomes[name]),
                                  name=f"cdc-fanout-{name}", daemon=True)
        thread.start()
        threads[name] = thread
    budget_s = plan.budget.seconds(len(changes) + len(contents))
    deadline = time.monotonic() + budget_s
    for name, thread in threads.items():
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            outcomes[name] = SinkOutcome(ok=False, over_budget=True, seconds=round(budget_s, 3),
                                         error=f"still writing after its budget of {budget_s:.1f}s "
                                               f"for {len(changes)} changes")

    steps["sinks"] = time.monotonic() - started - sum(steps.values())
    if producer is not None:
        remaining = producer.flush(FLUSH_TIMEOUT_S)
        steps["flush"] = time.monotonic() - started - sum(steps.values())
        if remaining or writes.errors:
            raise RuntimeError(f"fan-out: Kafka did not acknowledge {remaining} of {len(records)} records "
                               f"(errors: {writes.errors[:3]}); the batch is re-run")
    # This process's CPU (every thread's) while the task ran: what a task costs its Python worker.
    steps["cpu"] = time.process_time() - cpu_started
    report = {
        "counts": counts, "quarantined": reasons, "max_position": max_position,
        "first_offsets": writes.first, "task_steps": {k: round(v, 3) for k, v in steps.items()},
        "sinks": {name: outcome.__dict__ for name, outcome in outcomes.items()},
    }
    return report, parked, passed


def fan_out_partition(batches: Iterator, plan: FanoutPlan) -> Iterator:
    """``mapInArrow`` body: Arrow batches of output records in, RESULT_SCHEMA batches out."""
    import pyarrow as pa

    def rows():
        for batch in batches:
            columns = [batch.column(name).to_pylist() for name in change_log.OUTPUT_COLUMNS]
            yield from zip(*columns)

    report, parked, passed = fan_out_rows(rows(), plan)
    freeze_heap_once()
    kinds = [REPORT] + [PARKED] * len(parked) + [PASSED] * len(passed)
    texts = [json.dumps(report, default=str)] + parked + passed
    yield pa.RecordBatch.from_arrays([pa.array(kinds, pa.string()), pa.array(texts, pa.string())],
                                     names=["kind", "text"])


@dataclass
class FanoutResult:
    """The tasks' reports of one fan-out, merged on the driver: what they wrote, how each sink
    fared, the events they parked and the content topic's source records they passed on."""
    counts: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    max_position: int | None = None
    first_offsets: dict[str, dict[int, int]] = field(default_factory=dict)
    sinks: dict[str, SinkOutcome] = field(default_factory=dict)
    parked: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    # Per step of a task (read, sinks, flush): the slowest task's seconds; cpu: the tasks' sum.
    task_steps: dict[str, float] = field(default_factory=dict)

    def add_report(self, report: dict) -> None:
        for topic, n in report["counts"].items():
            self.counts[topic] = self.counts.get(topic, 0) + n
        for reason, n in report["quarantined"].items():
            self.quarantined[reason] = self.quarantined.get(reason, 0) + n
        if report["max_position"] is not None:
            self.max_position = max(self.max_position or 0, report["max_position"])
        for topic, partitions in report["first_offsets"].items():
            merged = self.first_offsets.setdefault(topic, {})
            for partition, offset in partitions.items():
                partition = int(partition)
                merged[partition] = min(offset, merged.get(partition, offset))
        for step, seconds in (report.get("task_steps") or {}).items():
            # Wall-clock steps: the slowest task's; CPU: what all the tasks spent.
            merged = seconds + self.task_steps.get(step, 0.0) if step == "cpu" else \
                max(seconds, self.task_steps.get(step, 0.0))
            self.task_steps[step] = round(merged, 3)
        for name, raw in report["sinks"].items():
            outcome = self.sinks.setdefault(name, SinkOutcome())
            outcome.seconds = max(outcome.seconds, raw["seconds"])
            if not raw["ok"]:
                outcome.ok = False
                outcome.error = outcome.error or raw["error"]
                outcome.over_budget = outcome.over_budget or raw["over_budget"]
            for stat, value in (raw.get("stats") or {}).items():
                if isinstance(value, (int, float)):
                    outcome.stats[stat] = outcome.stats.get(stat, 0) + value

    def merge(self, other: "FanoutResult") -> None:
        """Add another fan-out's counts and outcomes (its parked values stay its own)."""
        self.add_report({"counts": other.counts, "quarantined": other.quarantined, "max_position": other.max_position,
                         "first_offsets": other.first_offsets, "task_steps": other.task_steps,
                         "sinks": {name: o.__dict__ for name, o in other.sinks.items()}})

    def failed_sinks(self) -> dict[str, str]:
        return {name: outcome.error or "failed" for name, outcome in self.sinks.items() if not outcome.ok}


def fan_out(records, plan: FanoutPlan) -> FanoutResult:
    """Run the fan-out over a DataFrame of output records (change_log.OUTPUT_COLUMNS): one Spark job."""
    import functools

    result = FanoutResult(sinks={name: SinkOutcome() for name in plan.sinks})
    rows = records.select(*change_log.OUTPUT_COLUMNS).mapInArrow(
        functools.partial(fan_out_partition, plan=plan), RESULT_SCHEMA).collect()
    for row in rows:
        if row.kind == REPORT:
            result.add_report(json.loads(row.text))
        elif row.kind == PARKED:
            result.parked.append(row.text)
        else:
            result.passed.append(row.text)
    return result
