"""Quarantine: why a record could not be processed, and how it is published.

Every input record ends up in exactly one of: the changes, the quarantine, or the tombstones.
A quarantined record keeps its original key and value, so it can be inspected and replayed.
The reason strings are stable: dashboards, alerts and the reprocessing tools match on them.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

# The reasons are defined once, with the other data rules, in cdc_platform.semantics.
from cdc_platform.semantics import (
    FUTURE_EVENT_TS,
    MALFORMED_FIELD,
    MISSING_POSITION,
    MISSING_REQUIRED_FIELD,
    NEGATIVE_DURATION,
    SCHEMA_MISMATCH,
    UNKNOWN_CONTENT,
    UNKNOWN_OP,
    UNPARSEABLE_JSON,
)
from cdc_platform.semantics import QUARANTINE_REASONS as REASONS

__all__ = [
    "FUTURE_EVENT_TS", "MALFORMED_FIELD", "MISSING_POSITION", "MISSING_REQUIRED_FIELD", "NEGATIVE_DURATION",
    "REASONS", "SCHEMA_MISMATCH", "UNKNOWN_CONTENT", "UNKNOWN_OP", "UNPARSEABLE_JSON",
    "record_value", "to_kafka_records", "write_to_kafka",
]


def to_kafka_records(quarantine_df: DataFrame) -> DataFrame:
    """Quarantine rows as Kafka records: the original key, and a JSON value with every column.

    Publishing is at-least-once (a re-run micro-batch publishes again); consumers
    deduplicate on (topic, partition, offset, reason).
    """
    return quarantine_df.select(F.col("key"), record_value().alias("value"))


def record_value() -> Column:
    """The JSON value of a quarantine record, from the columns of schemas.QUARANTINE."""
    return F.to_json(F.struct(
        F.col("topic"), F.col("partition"), F.col("offset"), F.col("key"), F.col("value"),
        F.col("reason"), F.col("captured_at"),
    ))


def write_to_kafka(quarantine_df: DataFrame, bootstrap_servers: str, topic: str) -> None:
    """Publish a batch of quarantine rows to ``topic`` (which must exist: topics are provisioned)."""
    (
        to_kafka_records(quarantine_df)
        .write.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("topic", topic)
        .save()
    )
