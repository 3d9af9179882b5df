"""The streaming job: one core query that processes each source record once and writes every
change to every sink in the micro-batch that read it, and a catch-up query for each sink that
fell behind.

    Debezium topics --core--> change log, quarantine, waiting room (Kafka)
                         \---> Cassandra | Redis | REST   (the sinks the ledger has live)
    change log --<sink>_sink--> the sink that is behind, until it rejoins the core batches

Every query has its own checkpoint; the ledger (cdc_platform.sink_ledger) says which sinks the
core batches write. The driver supervises the queries: a query that fails is restarted alone
with a growing backoff while the others keep going, and resumes from its checkpoint; a sink that
fails in a core batch is caught up from the change log by its own query, then rejoins.
"""
from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import importlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from pyspark.sql import DataFrame, SparkSession

from cdc_platform import names
from cdc_platform.cluster import DEFAULT_CASSANDRA_CONSISTENCY
from cdc_platform.kafka_clients import CLIENT_CONFIG_ENV, decode_client_config
from cdc_stream.catalogue import ContentCatalogue
from cdc_platform.health.checks import latest_committed_offsets
from cdc_stream.catchup import CatchUps, SinkLedger, log_topics
from cdc_stream.config import SINKS, STREAM_SPARK_CONF, JobConfig, SinkBudget, SinkSettings, env_default
from cdc_stream.core import CoreBatch, CoreTopics, QuietTrigger, core_records
from cdc_stream.fanout import SINK_MODULES, FanoutPlan
from cdc_stream.waiting_room import WaitingRoom

log = logging.getLogger("cdc_stream")

MAX_RESTART_BACKOFF_S = 60.0
# After a stop request the driver gets this long beyond its stop timeout to exit on its own
# (the JVM's shutdown hooks, the sinks' threads); then it exits hard. Nothing is lost by that:
# an interrupted micro-batch re-runs from its checkpoint on the next start.
HARD_STOP_GRACE_S = 60.0

WriteBatch = Callable[[DataFrame, int, SinkSettings], Any]


@dataclasses.dataclass(frozen=True)
class Sink:
    """A sink module's ``write_batch(records_df, batch_id, settings)``: records_df holds the
    records (topic, value) of the normalized topics the sink reads (``READS_CONTENT``: the
    content changes too, not only the event changes)."""
    name: str
    write_batch: WriteBatch
    reads_content: bool = False


def load_sink(name: str) -> Sink:
    """The sink's functions, imported by module name so unused sinks cost nothing."""
    module_name = SINK_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"sink {name!r}: cannot import {module_name} ({exc})") from exc
    write_batch = getattr(module, "write_batch", None)
    if not callable(write_batch):
        raise RuntimeError(f"sink {name!r}: {module_name} has no write_batch(changes_df, batch_id, settings)")
    return Sink(name, write_batch, bool(getattr(module, "READS_CONTENT", False)))


def record_progress(checkpoint_root: str, query: str, report: dict) -> None:
    """The query's last finished batch (or failure), as JSON next to the checkpoints (local
    paths only): lets a watchdog see each query without talking to the Spark driver."""
    if "://" in checkpoint_root and not checkpoint_root.startswith("file://"):
        return
    directory = Path(checkpoint_root.removeprefix("file://")) / names.STREAM_PROGRESS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{query}.json.tmp"
    tmp.write_text(json.dumps(dict(report, query=query, finished_at=time.time()), default=str))
    tmp.replace(directory / f"{query}.json")


def clear_progress(checkpoint_root: str, query: str) -> None:
    if "://" in checkpoint_root and not checkpoint_root.startswith("file://"):
        return
    (Path(checkpoint_root.removeprefix("file://")) / names.STREAM_PROGRESS_DIR / f"{query}.json").unlink(missing_ok=True)


class BatchReports:
    """Each query's last batch report, handed from its foreachBatch function to the supervisor,
    which completes it with Spark's own account of the batch and publishes it."""

    # As many as Spark keeps progress updates: a report whose batch has left them is never taken.
    KEPT = int(STREAM_SPARK_CONF["spark.sql.streaming.numRecentProgressUpdates"])

    def __init__(self) -> None:
        self._reports: dict[str, dict[int, Any]] = {}
        self._lock = threading.Lock()

    def put(self, query: str, batch_id: int, report: Any) -> None:
        with self._lock:
            reports = self._reports.setdefault(query, {})
            reports[batch_id] = report
            for old in sorted(reports)[:-self.KEPT]:
                del reports[old]

    def take(self, query: str, batch_id: int) -> Any:
        with self._lock:
            return self._reports.get(query, {}).pop(batch_id, None)


class SinkProcessor:
    """The foreachBatch function of one sink's query: the batch's records, as they are in Kafka
    (topic and JSON value), go to the sink's ``write_batch``."""

    def __init__(self, sink: Sink, config: JobConfig, reports: BatchReports):
        self.sink = sink
        self.config = config
        self.reports = reports

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        batch_df.sparkSession.sparkContext.setLocalProperty("spark.scheduler.pool", self.sink.name)
        result = self.sink.write_batch(batch_df, batch_id, self.config.settings)
        report: dict[str, Any] = {"sink": self.sink.name, "duration_s": round(time.monotonic() - started, 3)}
        if dataclasses.is_dataclass(result):
            report["result"] = dataclasses.asdict(result)
        self.reports.put(names.sink_query(self.sink.name), batch_id, report)


class ReportedBatch:
    """foreachBatch of the content and core queries: runs the batch and hands over its report."""

    def __init__(self, query: str, batch, reports: BatchReports):
        self.query = query
        self.batch = batch
        self.reports = reports

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        self.reports.put(self.query, batch_id, self.batch(batch_df, batch_id))


def read_topics(spark: SparkSession, config: JobConfig, topics: list[str],
                starting_offsets: str | None = None) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .options(**config.kafka_options)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", starting_offsets or config.starting_offsets)
        .option("failOnDataLoss", str(config.fail_on_data_loss).lower())
    )
    if config.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(config.max_offsets_per_trigger))
    return reader.load()


def _start(df: DataFrame, query: str, function, config: JobConfig):
    return (
        df.writeStream.queryName(f"cdc-{query}")
        .foreachBatch(function)
        .option("checkpointLocation", config.checkpoint(query))
        .trigger(processingTime=f"{int(config.trigger_seconds * 1000)} milliseconds")
        .start()
    )


def core_topics(config: JobConfig) -> CoreTopics:
    return CoreTopics(events=config.events_topic, content=config.content_topic,
                      event_changes=config.settings.event_changes_topic, content_changes=config.settings.content_changes_topic,
                      quarantine=config.settings.quarantine_topic, pending=config.pending_topic,
                      repairs=config.repair_topic)


def core_source_topics(config: JobConfig) -> list[str]:
    """The events topic, plus the content topic: a new content row starts a core micro-batch even
    when no event arrives, so the events waiting for it are released at once; and the repairs
    topic, whose normalized changes go to every sink like any other change. (A wait that
    expires while nothing arrives is quarantined with the next batch.)"""
    return [config.events_topic, config.content_topic, config.repair_topic]


def ensure_stream_topics(config: JobConfig) -> None:
    """The core query's output topics, created when missing (as Kafka Streams does for its own)."""
    from cdc_platform.provisioning import create_topics, stream_topics

    created = create_topics(config.settings.kafka, stream_topics(
        config.settings.event_changes_topic, config.settings.content_changes_topic, config.pending_topic,
        config.repair_topic))
    if created:
        log.info("created stream topics %s", created)


def sink_ledger(config: JobConfig) -> SinkLedger:
    topics = {sink: log_topics(sink, config.settings.event_changes_topic, config.settings.content_changes_topic)
              for sink in config.sinks}
    return SinkLedger(config.checkpoint_root, config.sinks, config.settings.kafka, topics)


def core_starter(spark: SparkSession, config: JobConfig, ledger: SinkLedger, reports: BatchReports,
                 stopping: threading.Event) -> Callable:
    """Starts the core query; it reloads its catalogue and waiting room each time, so a
    restarted core query starts from exactly what Kafka holds."""

    def start_core():
        topics = core_topics(config)
        catalogue = ContentCatalogue(spark, config.settings.kafka, config.content_topic)
        catalogue.refresh()
        waiting = WaitingRoom(config.settings.kafka, config.pending_topic, config.max_content_wait_seconds)
        waiting.load()
        plan = FanoutPlan(topics, config.settings, config.sinks, config.sink_budget)
        quiet = QuietTrigger(config.quiet_trigger_seconds, config.quiet_batch_changes, stopping)
        batch = CoreBatch(plan, catalogue, waiting, ledger, quiet)
        source = read_topics(spark, config, core_source_topics(config))
        return _start(core_records(source, catalogue.frame, topics), names.STREAM_CORE_QUERY,
                      ReportedBatch(names.STREAM_CORE_QUERY, batch, reports), config)

    return start_core


def catch_up_starter(spark: SparkSession, config: JobConfig, reports: BatchReports) -> Callable:
    """``new_query(sink, starting_offsets)`` for CatchUps: the sink's query over its log topics."""

    def new_query(sink_name: str, starting_offsets: str | None) -> "SupervisedQuery":
        sink = load_sink(sink_name)
        topics = log_topics(sink_name, config.settings.event_changes_topic, config.settings.content_changes_topic)
        query = names.sink_query(sink_name)

        def start():
            return _start(read_topics(spark, config, topics, starting_offsets), query,
                          SinkProcessor(sink, config, reports), config)

        return SupervisedQuery(query, start, config, reports)

    return new_query


def error_digest(error: str, keep: int = 2000) -> str:
    """A long error's first and last lines: a Python error raised in a batch reaches the driver
    wrapped in py4j and JVM frames, and the cause is at the end."""
    if len(error) <= 2 * keep:
        return error
    return f"{error[:keep]}\n...\n{error[-keep:]}"


_ERROR_CLASS = re.compile(r"\[([A-Z][A-Z0-9_]+(?:\.[A-Z0-9_]+)*)\]")
# Error classes that only wrap the one that says what happened.
_WRAPPING_ERROR_CLASSES = {"STREAM_FAILED", "FOREACH_BATCH_USER_FUNCTION_ERROR", "PYTHON_EXCEPTION"}
_EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?[\w.$]+(?:Exception|Error)\b:")
_WRAPPING_EXCEPTIONS = ("py4j.protocol.Py4JJavaError", "Py4JJavaError", "pyspark.errors.exceptions.captured.")


def error_cause(error: str, limit: int = 400) -> str:
    """The one line of a failure that says what happened. Spark's own errors name a class
    ("[KAFKA_DATA_LOSS.COULD_NOT_READ_OFFSET_RANGE] Some data may have been lost ..."), under
    wrappers that name theirs; a Python error raised in a batch ends its traceback, under py4j."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    for line in lines:
        for match in _ERROR_CLASS.finditer(line):
            if match.group(1).split(".")[0] not in _WRAPPING_ERROR_CLASSES:
                return line[match.start():][:limit]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line) and not line.startswith(_WRAPPING_EXCEPTIONS)]
    if exceptions:
        return exceptions[-1][:limit]
    return (lines[0] if lines else "")[:limit]


class SupervisedQuery:
    """A query that is restarted alone, after a growing backoff, whenever it fails."""

    def __init__(self, name: str, start: Callable, config: JobConfig, reports: BatchReports):
        self.name = name
        self._start = start
        self.config = config
        self.reports = reports
        self.query = None
        self.failures = 0
        self.restart_at = 0.0
        self.started_at = 0.0
        self.reported_trigger = ""
        self.quarantined_total: Counter[str] = Counter()

    def poll(self, now: float) -> None:
        if self.query is not None and self.query.isActive:
            if self.failures and now - self.started_at > MAX_RESTART_BACKOFF_S:
                self.failures = 0  # healthy for a while: the next failure starts the backoff over
                clear_progress(self.config.checkpoint_root, self._failure_report)
            if self._report_progress() and self.failures:
                clear_progress(self.config.checkpoint_root, self._failure_report)
            return
        if self.query is not None:
            self._failed(now, str(self.query.exception() or "query stopped"))
            self.query = None
        if now < self.restart_at:
            return
        try:
            self.query = self._start()
            self.started_at = now
            # The failure report stays until the query proves itself (a batch, or a minute up):
            # a query that starts and fails again at once is still failing for whoever looks.
            log.info("started query %s (checkpoint %s)", self.name, self.config.checkpoint(self.name))
        except Exception as exc:  # noqa: BLE001 - a query that cannot start waits and retries
            self._failed(now, f"{type(exc).__name__}: {exc}")

    @property
    def _failure_report(self) -> str:
        return f"{self.name}.failure"

    def _report_progress(self) -> bool:
        """Publish each finished micro-batch once: the foreachBatch function's report, completed
        with Spark's own account (input rows, where the time went, the observed counts).
        True when a batch was published."""
        published = False
        # One call when nothing ran since the last poll (the usual case at a trickle); the whole
        # recent history only when there is something to publish.
        last = self.query.lastProgress
        if not last or (last.get("timestamp") or "") <= self.reported_trigger:
            return False
        for progress in self.query.recentProgress:
            # An idle trigger reports the id of the batch that has not run yet, so progress is
            # told apart by when its trigger started, not by batch id.
            started = progress.get("timestamp") or ""
            if started <= self.reported_trigger:
                continue
            self.reported_trigger = started
            batch_id = progress.get("batchId", -1)
            report = self.reports.take(self.name, batch_id)
            if report is None and not progress.get("numInputRows"):
                continue  # an idle trigger, not a batch: the last batch's report stays
            report = dataclasses.asdict(report) if dataclasses.is_dataclass(report) else dict(report or {})
            self.quarantined_total.update(report.get("quarantined") or {})
            if "quarantined" in report:
                report["quarantined_total"] = dict(self.quarantined_total)
            report.update(batch_id=batch_id, input_rows=progress.get("numInputRows"),
                          spark_durations_ms=progress.get("durationMs"))
            summary = {k: v for k, v in report.items() if k not in ("quarantined_total", "spark_durations_ms")}
            log.info("%s batch=%s %s spark_ms=%s", self.name, batch_id, summary,
                     (progress.get("durationMs") or {}).get("triggerExecution"))
            record_progress(self.config.checkpoint_root, self.name, report)
            published = True
        return published

    def _failed(self, now: float, error: str) -> None:
        self.failures += 1
        backoff = min(MAX_RESTART_BACKOFF_S, 2.0 ** (self.failures - 1))
        self.restart_at = now + backoff
        log.error("query %s failed (%d in a row); restarting it in %.0fs, the other queries go on: %s",
                  self.name, self.failures, backoff, error)
        record_progress(self.config.checkpoint_root, self._failure_report,
                        {"cause": error_cause(error), "error": error_digest(error), "failures": self.failures,
                         "restart_in_s": backoff})

    def stop(self, deadline: float) -> None:
        """Stop between micro-batches, so the running batch completes. A batch outliving the
        deadline is interrupted and re-runs from the checkpoint on the next start, which the
        sinks absorb (they are idempotent by source position)."""
        query = self.query
        if query is None or not query.isActive:
            return
        while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
            time.sleep(0.1)
        log.info("stopping query %s", query.name)
        query.stop()
        self._report_progress()


def run(spark: SparkSession, config: JobConfig, poll_s: float = 1.0, stop_timeout_s: float = 120.0) -> int:
    """Start the core query, and a catch-up query per sink that is behind; supervise them until SIGTERM/SIGINT."""
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        if stop.is_set():
            return
        log.info("received signal %d: stopping after the running micro-batches", signum)
        stop.set()
        arm_hard_stop(stop_timeout_s + HARD_STOP_GRACE_S)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    ensure_stream_topics(config)
    reports = BatchReports()
    ledger = sink_ledger(config)
    catch_ups = CatchUps(ledger, config.checkpoint, catch_up_starter(spark, config, reports),
                         lambda path: latest_committed_offsets(path))
    catch_ups.adopt_leftover_checkpoints()
    core = SupervisedQuery(names.STREAM_CORE_QUERY, core_starter(spark, config, ledger, reports, stop), config,
                           reports)
    log.info("supervising the core query (sinks %s); checkpoints under %s; ledger %s", config.sinks,
             config.checkpoint_root, {s: ledger.state(s).state for s in config.sinks})
    try:
        while not stop.is_set():
            now = time.monotonic()
            core.poll(now)
            catch_ups.poll(now)
            stop.wait(poll_s)
        deadline = time.monotonic() + stop_timeout_s
        core.stop(deadline)
        catch_ups.stop(deadline)
    except Exception as exc:
        if not stop.is_set():
            raise
        # The signal reached the JVM too (a process-group kill) and Spark shut itself down.
        log.warning("Spark stopped before its queries could finish their micro-batches (%s); an interrupted "
                    "batch re-runs from its checkpoint on the next start", type(exc).__name__)
    return 0


def arm_hard_stop(after_s: float, exit_code: int = 3, last_resort_after_s: float = 15.0,
                  dump_dir: str | Path | None = None) -> threading.Thread:
    """Bound a stop: a driver still alive ``after_s`` from now exits hard, taking its
    spark-submit JVM with it, whatever it waits for (a JVM shutdown hook, a sink's thread
    that interpreter shutdown would join, a query whose stop() never returns).

    A thread does it; should that thread never run again (the GIL held by a call that blocks,
    as in a CI run where the orphaned driver slept on after its JVM was gone), faulthandler's
    C timer ends the process ``last_resort_after_s`` later with status 1, and leaves every
    thread's stack in ``dump_dir`` (the temp dir by default) to show where it hung."""
    def expire() -> None:
        time.sleep(after_s)
        try:
            # The JVM that relays this process's output may be gone: logging can fail, exiting must not.
            log.error("the stream did not stop within %.0fs of the stop request; exiting hard "
                      "(interrupted micro-batches re-run from their checkpoints on the next start)", after_s)
            parent = spark_submit_parent()
            if parent is not None:
                os.kill(parent, signal.SIGKILL)
        except BaseException:  # noqa: BLE001 - nothing may stand between the deadline and the exit
            pass
        finally:
            os._exit(exit_code)

    timer = threading.Thread(target=expire, name="cdc-hard-stop", daemon=True)
    timer.start()
    dump_path = Path(dump_dir or tempfile.gettempdir()) / f"cdc-stream-{os.getpid()}-hard-stop.txt"
    dump = open(dump_path, "w")  # noqa: SIM115 - faulthandler writes to it, maybe long after this returns
    _HARD_STOP_DUMPS.append(dump)
    faulthandler.dump_traceback_later(after_s + last_resort_after_s, exit=True, file=dump)
    log.info("the driver exits by itself within %.0fs, or is ended (stacks then in %s)", after_s, dump_path)
    return timer


_HARD_STOP_DUMPS: list = []  # the dump files stay open for faulthandler


def spark_submit_parent() -> int | None:
    """The spark-submit JVM that launched this driver (client mode), if it did."""
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return None
    parent = os.getppid()
    try:
        cmdline = Path(f"/proc/{parent}/cmdline").read_bytes()
    except OSError:
        return None
    return parent if b"org.apache.spark.deploy.SparkSubmit" in cmdline else None


def build_session(app_name: str, master: str | None) -> SparkSession:
    builder = SparkSession.builder.appName(app_name)
    for key, value in STREAM_SPARK_CONF.items():
        builder = builder.config(key, value)
    # Under spark-submit the master (and --jars) come from the command line; run directly with
    # python, default to the embedded local master with the Kafka connector jars of the stack.
    launched_by_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if master:
        builder = builder.master(master)
    elif not launched_by_spark_submit:
        builder = builder.master("local[*]")
    if not launched_by_spark_submit:
        # Python workers must run this interpreter: it has the sinks' client libraries.
        builder = builder.config("spark.pyspark.python", sys.executable)
        if os.environ.get("SPARK_KAFKA_JARS"):
            builder = builder.config("spark.jars", os.environ["SPARK_KAFKA_JARS"])
    return builder.getOrCreate()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark_cdc_multi_sink.py",
        description="CDC stream: Debezium topics -> clean/enrich once -> Cassandra, Redis, REST in the same micro-batch "
                    "(a sink that falls behind is caught up from the change log by its own query).",
    )
    p.add_argument("--bootstrap", default=None,
                   help="Kafka bootstrap servers; without it, bootstrap.servers of the Kafka connection's "
                        f"client config (env {CLIENT_CONFIG_ENV}, JSON with librdkafka names: SASL and TLS "
                        "settings reach every Kafka client of the job; never the command line, it holds "
                        "secrets), else env KAFKA_BOOTSTRAP")
    p.add_argument("--checkpoint-root", default=env_default("SPARK_CHECKPOINT_ROOT"),
                   help="each query keeps its checkpoint under <root>/<query> and its last batch report under "
                        f"<root>/{names.STREAM_PROGRESS_DIR} (env SPARK_CHECKPOINT_ROOT)")
    p.add_argument("--cassandra-host", default=env_default("CASSANDRA_HOST"), help="(env CASSANDRA_HOST)")
    p.add_argument("--cassandra-port", type=int, default=int(env_default("CASSANDRA_PORT", "9042")),
                   help="(env CASSANDRA_PORT)")
    p.add_argument("--cassandra-keyspace", default=env_default("CASSANDRA_KEYSPACE", names.CASSANDRA_KEYSPACE))
    p.add_argument("--cassandra-user", default=env_default("CASSANDRA_SINK_USER"),
                   help="the sink's Cassandra role (env CASSANDRA_SINK_USER); its password comes only from "
                        "env CASSANDRA_SINK_PASSWORD, never the command line")
    p.add_argument("--cassandra-consistency", default=env_default("CDC_CASSANDRA_CONSISTENCY", DEFAULT_CASSANDRA_CONSISTENCY),
                   help="consistency level of the sink's writes (env CDC_CASSANDRA_CONSISTENCY)")
    p.add_argument("--redis-url", default=env_default("REDIS_URL"), help="(env REDIS_URL)")
    p.add_argument("--api-url", default=env_default("API_URL"), help="REST microservice base URL (env API_URL)")
    p.add_argument("--api-token", default=env_default("API_TOKEN"),
                   help="bearer token; prefer env API_TOKEN, arguments are visible in the process list")
    p.add_argument("--sinks", default=",".join(SINKS),
                   help=f"comma-separated subset of {','.join(SINKS)} (default: all)")
    p.add_argument("--trigger-seconds", type=float, default=float(env_default("CDC_TRIGGER_SECONDS") or JobConfig.trigger_seconds),
                   help="micro-batch interval of every query (env CDC_TRIGGER_SECONDS; 0: as fast as possible)")
    p.add_argument("--starting-offsets", default=env_default("CDC_STARTING_OFFSETS", "earliest"),
                   help="earliest|latest|JSON; only used when a query has no checkpoint yet")
    p.add_argument("--max-offsets-per-trigger", type=int, default=JobConfig.max_offsets_per_trigger,
                   help="bound each micro-batch (0: unbounded)")
    p.add_argument("--max-content-wait-seconds", type=float,
                   default=float(env_default("CDC_MAX_CONTENT_WAIT_SECONDS") or JobConfig.max_content_wait_seconds),
                   help="how long an event waits for its content row before it is quarantined as unknown_content")
    p.add_argument("--quiet-trigger-seconds", type=float,
                   default=float(env_default("CDC_QUIET_TRIGGER_SECONDS") or JobConfig.quiet_trigger_seconds),
                   help="after a core batch of fewer than --quiet-batch-changes changes, the next one starts this "
                        "long after it started, not --trigger-seconds (env CDC_QUIET_TRIGGER_SECONDS; 0: off)")
    p.add_argument("--quiet-batch-changes", type=int, default=JobConfig.quiet_batch_changes,
                   help="what counts as a small core batch for --quiet-trigger-seconds")
    p.add_argument("--sink-budget-seconds", type=float,
                   default=float(env_default("CDC_SINK_BUDGET_SECONDS") or SinkBudget.base_s),
                   help="how long a sink may take for a task's changes in a core batch, plus "
                        "--sink-budget-ms-per-change per change, before it is caught up from the change log "
                        "instead (env CDC_SINK_BUDGET_SECONDS)")
    p.add_argument("--sink-budget-ms-per-change", type=float,
                   default=float(env_default("CDC_SINK_BUDGET_MS_PER_CHANGE") or SinkBudget.per_change_s * 1000),
                   help="(env CDC_SINK_BUDGET_MS_PER_CHANGE)")
    p.add_argument("--events-topic", default=names.EVENTS_TOPIC)
    p.add_argument("--content-topic", default=names.CONTENT_TOPIC)
    p.add_argument("--quarantine-topic", default=names.QUARANTINE_TOPIC)
    p.add_argument("--event-changes-topic", default=names.EVENT_CHANGES_TOPIC)
    p.add_argument("--content-changes-topic", default=names.CONTENT_CHANGES_TOPIC)
    p.add_argument("--pending-topic", default=names.PENDING_TOPIC, help="the waiting room of events without content")
    p.add_argument("--repair-topic", default=names.REPAIR_CHANGES_TOPIC,
                   help="normalized changes of the platform's repairs (cdc_resnapshot's sweep), applied like any change")
    p.add_argument("--dlq-topic", default=names.DLQ_TOPIC)
    p.add_argument("--master", default=None, help="Spark master when not launched by spark-submit")
    p.add_argument("--log-level", default=env_default("CDC_LOG_LEVEL", "INFO"))
    return p


def kafka_connection_from_env() -> dict:
    """The Kafka connection's client config that the operator passed in the environment."""
    try:
        return decode_client_config(env_default(CLIENT_CONFIG_ENV) or "{}")
    except ValueError as exc:
        raise SystemExit(f"env {CLIENT_CONFIG_ENV} is not a Kafka client config (a JSON object): {exc}") from exc


def config_from_args(args: argparse.Namespace) -> JobConfig:
    kafka_connection = kafka_connection_from_env()
    # The connection's servers, unless the command line names others; KAFKA_BOOTSTRAP (the local
    # stack's environment, inherited by spark-submit) only where there is no connection.
    connection_bootstrap = kafka_connection.pop("bootstrap.servers", None)
    bootstrap = args.bootstrap or connection_bootstrap or env_default("KAFKA_BOOTSTRAP")
    missing = [flag for flag, value in (("--bootstrap", bootstrap), ("--checkpoint-root", args.checkpoint_root),
                                        ("--cassandra-host", args.cassandra_host)) if not value]
    sinks = tuple(s.strip() for s in args.sinks.split(",") if s.strip())
    if "redis" in sinks and not args.redis_url:
        missing.append("--redis-url")
    if "rest" in sinks:
        missing += [flag for flag, value in (("--api-url", args.api_url), ("--api-token", args.api_token)) if not value]
    if missing:
        raise SystemExit(f"missing settings: {', '.join(missing)} (pass them or source .stack/env)")
    settings = SinkSettings(
        bootstrap=bootstrap,
        cassandra_host=args.cassandra_host,
        cassandra_port=args.cassandra_port,
        cassandra_keyspace=args.cassandra_keyspace,
        cassandra_user=args.cassandra_user,
        cassandra_password=env_default("CASSANDRA_SINK_PASSWORD") if args.cassandra_user else None,
        cassandra_consistency=args.cassandra_consistency,
        redis_url=args.redis_url,
        api_url=args.api_url,
        api_token=args.api_token,
        dlq_topic=args.dlq_topic,
        quarantine_topic=args.quarantine_topic,
        event_changes_topic=args.event_changes_topic,
        content_changes_topic=args.content_changes_topic,
        kafka_connection=kafka_connection,
    )
    try:
        return JobConfig(
            settings=settings,
            checkpoint_root=args.checkpoint_root,
            sinks=sinks,
            events_topic=args.events_topic,
            content_topic=args.content_topic,
            trigger_seconds=args.trigger_seconds,
            starting_offsets=args.starting_offsets,
            max_offsets_per_trigger=args.max_offsets_per_trigger or None,
            pending_topic=args.pending_topic,
            repair_topic=args.repair_topic,
            max_content_wait_seconds=args.max_content_wait_seconds,
            quiet_trigger_seconds=args.quiet_trigger_seconds,
            quiet_batch_changes=args.quiet_batch_changes,
            sink_budget=SinkBudget(args.sink_budget_seconds, args.sink_budget_ms_per_change / 1000),
        )
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_from_args(args)
    for sink in config.sinks:
        load_sink(sink)  # a sink that cannot be imported stops the job before Spark starts
    log.info("settings: %s", config)
    spark = build_session("cdc-multi-sink", args.master)
    try:
        return run(spark, config)
    finally:
        try:
            spark.stop()
        except Exception as exc:  # already stopped by the JVM's own shutdown
            log.debug("spark.stop(): %s", exc)
