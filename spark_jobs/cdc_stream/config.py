"""Settings of the streaming job and of its sinks.

Defaults come from the environment (``.stack/env`` locally, Airflow connections in a deployment);
command-line arguments override them. Nothing here names a host.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cdc_platform import names
from cdc_platform.cluster import DEFAULT_CASSANDRA_CONSISTENCY
from cdc_platform.kafka_clients import client_config
from cdc_stream.kafka_options import spark_kafka_options

SINKS = names.STREAM_SINKS

# Spark settings the stream is tuned with, set on its session by job.build_session (under
# spark-submit too: the operator passes only what concerns running under spark-submit).
# Local checkpoints without .crc side files: every micro-batch of every query writes two
# metadata files, and Hadoop's checksummed local file system doubles the file operations
# (each spawning a chmod/readlink process without Hadoop's native library). Other file
# systems (hdfs://, s3a://) are unaffected.
STREAM_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.scheduler.mode": "FAIR",
    "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "org.apache.hadoop.fs.local.RawLocalFs",
    # The supervisor reads every query's recent progress each second; a short history is enough.
    "spark.sql.streaming.numRecentProgressUpdates": "20",
    # query.stop() waits for the query's thread this long (the default, 0, waits forever)
    # and then raises, so a stop request always ends.
    "spark.sql.streaming.stopTimeout": "30000",
    # A micro-batch's plan is small and its data a few thousand rows: adaptive execution would
    # split each batch into a job per cached scan and per broadcast, each paying Spark's fixed
    # cost of a job, for nothing to re-optimise.
    "spark.sql.adaptive.enabled": "false",
    # Every core batch broadcasts the content catalogue (a few KB) for its join. A broadcast
    # writes into chunks of this size, allocated whole: at the default 4 MiB each batch made a
    # humongous allocation on the driver's heap, and with it a young GC and a marking cycle.
    "spark.broadcast.blockSize": "256k",
}


@dataclass(frozen=True)
class SinkSettings:
    """What every sink's ``write_batch(records_df, batch_id, settings)`` receives.

    Secrets (the Cassandra password, the Redis URL carries a password, the API token, the Kafka
    connection's SASL and TLS settings) are left out of repr, so logging the settings never leaks them.
    """
    bootstrap: str
    cassandra_host: str
    cassandra_port: int
    cassandra_keyspace: str = names.CASSANDRA_KEYSPACE
    cassandra_user: str | None = None
    cassandra_password: str | None = field(default=None, repr=False)
    cassandra_consistency: str = DEFAULT_CASSANDRA_CONSISTENCY
    redis_url: str | None = field(default=None, repr=False)
    api_url: str | None = None
    api_token: str | None = field(default=None, repr=False)
    dlq_topic: str = names.DLQ_TOPIC
    parked_topic: str = names.PARKED_TOPIC
    quarantine_topic: str = names.QUARANTINE_TOPIC
    event_changes_topic: str = names.EVENT_CHANGES_TOPIC
    content_changes_topic: str = names.CONTENT_CHANGES_TOPIC
    # The Kafka connection's other client settings (librdkafka names: SASL, TLS, client.id).
    kafka_connection: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        if "bootstrap.servers" in self.kafka_connection:
            raise ValueError("the bootstrap servers are SinkSettings.bootstrap, not a kafka_connection setting")

    @property
    def kafka(self) -> dict:
        """The confluent-kafka client config of the stream's Kafka: its clients add their own settings."""
        return client_config(self.bootstrap, self.kafka_connection)


@dataclass(frozen=True)
class SinkBudget:
    """How long a sink may take for one task's changes in a core batch before it is set behind
    and caught up from the change log instead: a base, plus an allowance per change (so a live
    sink keeps at least 1 / per_change_s changes/s per task)."""
    base_s: float = 2.0
    per_change_s: float = 0.001

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.per_change_s < 0:
            raise ValueError(f"a sink budget needs base_s > 0 and per_change_s >= 0, got {self}")

    def seconds(self, changes: int) -> float:
        return self.base_s + self.per_change_s * changes


@dataclass(frozen=True)
class JobConfig:
    settings: SinkSettings
    checkpoint_root: str
    sinks: tuple[str, ...] = SINKS
    events_topic: str = names.EVENTS_TOPIC
    content_topic: str = names.CONTENT_TOPIC
    pending_topic: str = names.PENDING_TOPIC
    repair_topic: str = names.REPAIR_CHANGES_TOPIC
    trigger_seconds: float = 0.5
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = 50_000
    fail_on_data_loss: bool = True
    # How long an event waits for its content row before it is quarantined as unknown_content.
    max_content_wait_seconds: float = 900.0
    sink_budget: SinkBudget = SinkBudget()
    # The adaptive trigger: a core batch that applied fewer than quiet_batch_changes changes makes
    # the next one start no sooner than quiet_trigger_seconds after it started. Each batch costs
    # Spark about a tenth of a core-second whatever its size, so at a trickle the stream runs
    # fewer, larger batches; under load batches follow each other at trigger_seconds.
    quiet_trigger_seconds: float = 1.5
    quiet_batch_changes: int = 200

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sinks) - set(SINKS))
        if unknown or not self.sinks:
            raise ValueError(f"sinks must be a non-empty subset of {SINKS}, got {self.sinks}")
        if len(set(self.sinks)) != len(self.sinks):
            raise ValueError(f"sinks listed twice: {self.sinks}")
        if self.trigger_seconds < 0:
            raise ValueError("trigger_seconds must not be negative")
        if self.quiet_trigger_seconds < 0 or self.quiet_batch_changes < 0:
            raise ValueError("quiet_trigger_seconds and quiet_batch_changes must not be negative")
        if self.max_content_wait_seconds < 0:
            raise ValueError("max_content_wait_seconds must not be negative")
        # A setting Spark's Kafka client cannot take stops the job here, before any query starts.
        spark_kafka_options(self.settings.kafka)

    @property
    def kafka_options(self) -> dict[str, str]:
        """The options of every Spark Kafka source and sink of the job."""
        return spark_kafka_options(self.settings.kafka)

    def checkpoint(self, query: str) -> str:
        """Each query owns its checkpoint: sharing one would couple the sinks' progress."""
        return f"{self.checkpoint_root.rstrip('/')}/{query}"


def env_default(name: str, fallback: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else fallback
