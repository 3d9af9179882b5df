"""The streaming job: one Kafka-sourced query per sink, each with its own checkpoint.

Every query reads both CDC topics. In each micro-batch it first applies the batch's content
changes (to Cassandra, idempotently) and reads the content lookup back from Cassandra, so new
content enriches events without a restart; then it runs the event transforms and hands the
normalized changes to its sink. The queries never wait on each other: a slow or dead REST API
only holds back the "rest" query. Quarantined records are published by the "cassandra" query
(the truth path) only, so each bad record is quarantined once per processing attempt.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cdc_platform import names
from cdc_stream import cassandra_sink, quarantine, transforms
from cdc_stream.config import SINKS, JobConfig, SinkSettings, env_default

log = logging.getLogger("cdc_stream")

SINK_MODULES = {
    "cassandra": "cdc_stream.cassandra_sink",
    "redis": "cdc_stream.redis_sink",
    "rest": "cdc_stream.rest_sink",
}
TRUTH_SINK = "cassandra"
PROGRESS_DIR = "_progress"

WriteBatch = Callable[[DataFrame, int, SinkSettings], None]


def load_sink(name: str) -> WriteBatch:
    """The sink's ``write_batch``, imported by module name so unused sinks cost nothing."""
    module_name = SINK_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"sink {name!r}: cannot import {module_name} ({exc})") from exc
    write_batch = getattr(module, "write_batch", None)
    if not callable(write_batch):
        raise RuntimeError(f"sink {name!r}: {module_name} has no write_batch(changes_df, batch_id, settings)")
    return write_batch


@dataclasses.dataclass(frozen=True)
class BatchReport:
    """One micro-batch of one query. ``quarantined`` counts the rejected records; only the
    cassandra query publishes them."""
    sink: str
    batch_id: int
    records: int
    changes: int
    quarantined: int
    tombstones: int
    content_changes: int
    max_position: int | None
    duration_s: float


class BatchProcessor:
    """The foreachBatch function of one sink's query."""

    def __init__(self, sink: str, write_batch: WriteBatch, config: JobConfig):
        self.sink = sink
        self.write_batch = write_batch
        self.config = config
        self.target = cassandra_sink.CassandraTarget.from_settings(config.settings)

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        spark = batch_df.sparkSession
        # With spark.scheduler.mode=FAIR, each query's jobs get their own pool.
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", self.sink)
        batch_df.persist(StorageLevel.MEMORY_AND_DISK)
        cached: list[DataFrame] = [batch_df]
        try:
            report = self._process(spark, batch_df, batch_id, started, cached)
        finally:
            for df in cached:
                df.unpersist()
        log.info("sink=%s batch=%d records=%d changes=%d quarantined=%d tombstones=%d content=%d "
                 "max_position=%s duration=%.2fs", report.sink, report.batch_id, report.records,
                 report.changes, report.quarantined, report.tombstones, report.content_changes,
                 report.max_position, report.duration_s)
        self._record_progress(report)

    def _process(self, spark: SparkSession, batch_df: DataFrame, batch_id: int, started: float,
                 cached: list[DataFrame]) -> BatchReport:
        totals = batch_df.agg(F.count(F.lit(1)).alias("records"),
                              F.count_if(F.col("value").isNull()).alias("tombstones")).first()
        events = batch_df.filter(F.col("topic") == F.lit(self.config.events_topic))
        content = batch_df.filter(F.col("topic") == F.lit(self.config.content_topic))

        # One processing time per batch: changes and quarantine are computed by separate Spark jobs,
        # and a per-job current_timestamp could let a borderline event fall into neither.
        now = datetime.now(timezone.utc)
        content_changes, content_rejected = transforms.parse_content(content, now)
        content_changes = content_changes.persist()
        cached.append(content_changes)
        content_count = content_changes.count()
        if content_count:
            # Every query applies content itself (idempotent), so none depends on another's progress.
            cassandra_sink.write_content(content_changes, self.target)
        lookup = cassandra_sink.read_content_lookup(spark, self.target)

        batch = transforms.process_events(events, lookup, now)
        changes = batch.changes.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(changes)
        stats = changes.agg(F.count(F.lit(1)).alias("n"), F.max("position").alias("max_position")).first()
        # Called for every micro-batch, even one without changes, so sinks can track batch ids.
        self.write_batch(changes, batch_id, self.config.settings)

        rejected = batch.quarantine.unionByName(content_rejected).persist()
        cached.append(rejected)
        quarantined = rejected.count()
        if quarantined and self.sink == TRUTH_SINK:
            quarantine.write_to_kafka(rejected, self.config.settings.bootstrap, self.config.settings.quarantine_topic)
        return BatchReport(self.sink, batch_id, totals.records, stats.n, quarantined, totals.tombstones,
                           content_count, stats.max_position, round(time.monotonic() - started, 3))

    def _record_progress(self, report: BatchReport) -> None:
        """The last finished batch per sink, as JSON next to the checkpoints (local paths only).

        Lets a watchdog see each query's progress without talking to the Spark driver.
        """
        root = self.config.checkpoint_root
        if "://" in root and not root.startswith("file://"):
            return
        directory = Path(root.removeprefix("file://")) / PROGRESS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        body = dict(dataclasses.asdict(report), finished_at=time.time())
        tmp = directory / f".{self.sink}.json.tmp"
        tmp.write_text(json.dumps(body))
        tmp.replace(directory / f"{self.sink}.json")


def read_cdc_topics(spark: SparkSession, config: JobConfig) -> DataFrame:
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.settings.bootstrap)
        .option("subscribe", f"{config.events_topic},{config.content_topic}")
        .option("startingOffsets", config.starting_offsets)
        .option("failOnDataLoss", str(config.fail_on_data_loss).lower())
    )
    if config.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(config.max_offsets_per_trigger))
    return reader.load()


def start_query(spark: SparkSession, config: JobConfig, sink: str, write_batch: WriteBatch):
    return (
        read_cdc_topics(spark, config)
        .writeStream.queryName(f"cdc-{sink}")
        .foreachBatch(BatchProcessor(sink, write_batch, config))
        .option("checkpointLocation", config.checkpoint(sink))
        .trigger(processingTime=f"{config.trigger_seconds} seconds")
        .start()
    )


def stop_gracefully(queries, timeout_s: float = 120.0) -> None:
    """Stop each query between micro-batches, so the running batch completes.

    If a batch outlives the timeout it is interrupted; it then re-runs from the checkpoint
    on the next start, which the sinks absorb (they are idempotent by source position).
    """
    deadline = time.monotonic() + timeout_s
    for query in queries:
        while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
            time.sleep(0.2)
        log.info("stopping query %s", query.name)
        query.stop()


def run(spark: SparkSession, config: JobConfig, writers: dict[str, WriteBatch], poll_s: float = 1.0) -> int:
    """Start one query per sink and supervise them until SIGTERM/SIGINT or a query fails."""
    stop = threading.Event()

    def request_stop(signum, _frame) -> None:
        log.info("received signal %d: stopping after the running micro-batches", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    queries = [start_query(spark, config, sink, write) for sink, write in writers.items()]
    log.info("started queries %s; checkpoints under %s", [q.name for q in queries], config.checkpoint_root)
    failed = None
    try:
        while not stop.is_set() and failed is None:
            failed = next((q for q in queries if not q.isActive), None)
            stop.wait(poll_s)
        stop_gracefully([q for q in queries if q.isActive])
    except Exception as exc:
        if not stop.is_set():
            raise
        # The signal reached the JVM too (a process-group kill) and Spark shut itself down.
        log.warning("Spark stopped before its queries could finish their micro-batches (%s); an interrupted "
                    "batch re-runs from its checkpoint on the next start", type(exc).__name__)
        return 0
    if failed is not None:
        # A restart (Airflow retries) resumes every query from its checkpoint.
        log.error("query %s terminated: %s", failed.name, failed.exception())
        return 1
    return 0


def build_session(app_name: str, master: str | None) -> SparkSession:
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.scheduler.mode", "FAIR")
    )
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
        description="CDC stream: Debezium topics -> clean/enrich -> Cassandra, Redis, REST (one query per sink).",
    )
    p.add_argument("--bootstrap", default=env_default("KAFKA_BOOTSTRAP"),
                   help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP)")
    p.add_argument("--checkpoint-root", default=env_default("SPARK_CHECKPOINT_ROOT"),
                   help="one checkpoint per sink is kept under <root>/<sink> (env SPARK_CHECKPOINT_ROOT)")
    p.add_argument("--cassandra-host", default=env_default("CASSANDRA_HOST"), help="(env CASSANDRA_HOST)")
    p.add_argument("--cassandra-port", type=int, default=int(env_default("CASSANDRA_PORT", "9042")),
                   help="(env CASSANDRA_PORT)")
    p.add_argument("--cassandra-keyspace", default=env_default("CASSANDRA_KEYSPACE", names.CASSANDRA_KEYSPACE))
    p.add_argument("--redis-url", default=env_default("REDIS_URL"), help="(env REDIS_URL)")
    p.add_argument("--api-url", default=env_default("API_URL"), help="REST microservice base URL (env API_URL)")
    p.add_argument("--api-token", default=env_default("API_TOKEN"),
                   help="bearer token; prefer env API_TOKEN, arguments are visible in the process list")
    p.add_argument("--sinks", default=",".join(SINKS),
                   help=f"comma-separated subset of {','.join(SINKS)} (default: all)")
    p.add_argument("--trigger-seconds", type=float, default=float(env_default("CDC_TRIGGER_SECONDS", "5")))
    p.add_argument("--starting-offsets", default=env_default("CDC_STARTING_OFFSETS", "earliest"),
                   help="earliest|latest|JSON; only used when a query has no checkpoint yet")
    p.add_argument("--max-offsets-per-trigger", type=int, default=10_000,
                   help="bound each micro-batch (0: unbounded)")
    p.add_argument("--events-topic", default=names.EVENTS_TOPIC)
    p.add_argument("--content-topic", default=names.CONTENT_TOPIC)
    p.add_argument("--quarantine-topic", default=names.QUARANTINE_TOPIC)
    p.add_argument("--dlq-topic", default=names.DLQ_TOPIC)
    p.add_argument("--master", default=None, help="Spark master when not launched by spark-submit")
    p.add_argument("--log-level", default=env_default("CDC_LOG_LEVEL", "INFO"))
    return p


def config_from_args(args: argparse.Namespace) -> JobConfig:
    missing = [flag for flag, value in (("--bootstrap", args.bootstrap), ("--checkpoint-root", args.checkpoint_root),
                                        ("--cassandra-host", args.cassandra_host)) if not value]
    sinks = tuple(s.strip() for s in args.sinks.split(",") if s.strip())
    if "redis" in sinks and not args.redis_url:
        missing.append("--redis-url")
    if "rest" in sinks:
        missing += [flag for flag, value in (("--api-url", args.api_url), ("--api-token", args.api_token)) if not value]
    if missing:
        raise SystemExit(f"missing settings: {', '.join(missing)} (pass them or source .stack/env)")
    settings = SinkSettings(
        bootstrap=args.bootstrap,
        cassandra_host=args.cassandra_host,
        cassandra_port=args.cassandra_port,
        cassandra_keyspace=args.cassandra_keyspace,
        redis_url=args.redis_url,
        api_url=args.api_url,
        api_token=args.api_token,
        dlq_topic=args.dlq_topic,
        quarantine_topic=args.quarantine_topic,
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
        )
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = config_from_args(args)
    writers = {sink: load_sink(sink) for sink in config.sinks}
    log.info("settings: %s", config)
    spark = build_session("cdc-multi-sink", args.master)
    try:
        return run(spark, config, writers)
    finally:
        try:
            spark.stop()
        except Exception as exc:  # already stopped by the JVM's own shutdown
            log.debug("spark.stop(): %s", exc)
