"""Quarantine: why a record could not be processed, and how it is published.

Every input record ends up in exactly one of: the changes, the quarantine, the waiting room
(events whose content has not arrived yet), or the tombstones.
A quarantined record keeps its original key and value, so it can be inspected and replayed.
The reason strings are stable: dashboards, alerts and the reprocessing tools match on them.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

# The reasons are defined once, with the other data rules, in cdc_platform.semantics.
from cdc_platform.semantics import (
    FUTURE_EVENT_TS,
    MALFORMED_FIELD,
    MISSING_POSITION,
    MISSING_REQUIRED_FIELD,
    NEGATIVE_DURATION,
    OUT_OF_RANGE_TIMESTAMP,
    OVERSIZED_VALUE,
    SCHEMA_MISMATCH,
    UNAVAILABLE_VALUE,
    UNKNOWN_CONTENT,
    UNKNOWN_OP,
    UNPARSEABLE_JSON,
)
from cdc_platform.semantics import QUARANTINE_REASONS as REASONS
from cdc_stream.schemas import QUARANTINE

__all__ = [
    "FUTURE_EVENT_TS", "MALFORMED_FIELD", "MISSING_POSITION", "MISSING_REQUIRED_FIELD", "NEGATIVE_DURATION",
    "OUT_OF_RANGE_TIMESTAMP", "OVERSIZED_VALUE", "REASONS", "SCHEMA_MISMATCH", "UNAVAILABLE_VALUE", "UNKNOWN_CONTENT", "UNKNOWN_OP", "UNPARSEABLE_JSON",
    "to_kafka_records",
]


def to_kafka_records(quarantine_df: DataFrame) -> DataFrame:
    """Quarantine rows (schemas.QUARANTINE) as Kafka records: the original key, a JSON value
    with every column, and the reason (for counting; not written).

    Publishing is at-least-once (a re-run micro-batch publishes again); consumers
    deduplicate on (topic, partition, offset, reason).
    """
    return quarantine_df.select(
        F.col("key"),
        F.to_json(F.struct(*(F.col(field.name) for field in QUARANTINE.fields))).alias("value"),
        F.col("reason"),
    )
