"""Quarantine: why a record could not be processed, and how it is published.

Every input record ends up in exactly one of: the changes, the quarantine, or the tombstones.
A quarantined record keeps its original key and value, so it can be inspected and replayed.
The reason strings are stable: dashboards, alerts and the reprocessing tools match on them.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

UNPARSEABLE_JSON = "unparseable_json"
# Valid JSON, but not a Debezium envelope with the expected field types.
SCHEMA_MISMATCH = "schema_mismatch"
MISSING_POSITION = "missing_position"
UNKNOWN_OP = "unknown_op"
MISSING_REQUIRED_FIELD = "missing_required_field"
# A UUID column holding something that is not a UUID (the sinks store them as uuid).
MALFORMED_FIELD = "malformed_field"
NEGATIVE_DURATION = "negative_duration"
FUTURE_EVENT_TS = "future_event_ts"
UNKNOWN_CONTENT = "unknown_content"

REASONS = (
    UNPARSEABLE_JSON, SCHEMA_MISMATCH, MISSING_POSITION, UNKNOWN_OP, MISSING_REQUIRED_FIELD,
    MALFORMED_FIELD, NEGATIVE_DURATION, FUTURE_EVENT_TS, UNKNOWN_CONTENT,
)


def to_kafka_records(quarantine_df: DataFrame) -> DataFrame:
    """Quarantine rows as Kafka records: the original key, and a JSON value with every column.

    Publishing is at-least-once (a re-run micro-batch publishes again); consumers
    deduplicate on (topic, partition, offset, reason).
    """
    return quarantine_df.select(
        F.col("key"),
        F.to_json(F.struct(
            F.col("topic"), F.col("partition"), F.col("offset"), F.col("key"), F.col("value"),
            F.col("reason"), F.col("detected_at"),
        )).alias("value"),
    )


def write_to_kafka(quarantine_df: DataFrame, bootstrap_servers: str, topic: str) -> None:
    """Publish a batch of quarantine rows to ``topic`` (which must exist: topics are provisioned)."""
    (
        to_kafka_records(quarantine_df)
        .write.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("topic", topic)
        .save()
    )
