"""The normalized change topics: how the core query writes changes and the sink queries read them.

The core query parses, validates and enriches each source record once and writes the result
here; each sink query reads it back with one flat ``from_json``. Records are keyed by the row id,
as the source topics are, so a row's changes stay in order within a partition (the sinks do not
rely on it: every write is fenced by the change's source position).
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdc_stream import quarantine, schemas

# Microseconds survive the round trip (Spark's default JSON timestamp format keeps millis).
JSON_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"}

# What the core query hands to the Kafka writer; reason and position only feed its batch report.
OUTPUT_COLUMNS = ("topic", "key", "value", "reason", "position")


def _json(schema) -> Column:
    return F.to_json(F.struct(*(F.col(field.name) for field in schema.fields)), JSON_OPTIONS)


def event_change_records(changes: DataFrame, topic: str) -> DataFrame:
    """schemas.CHANGE rows as records of the event changes topic."""
    return changes.select(
        F.lit(topic).alias("topic"),
        F.col("id").cast("string").alias("key"),
        _json(schemas.CHANGE).alias("value"),
        F.lit(None).cast("string").alias("reason"),
        F.col("position"),
    )


def content_change_records(content_changes: DataFrame, topic: str) -> DataFrame:
    """schemas.CONTENT_CHANGE rows as records of the content changes topic."""
    return content_changes.select(
        F.lit(topic).alias("topic"),
        F.col("id").alias("key"),
        _json(schemas.CONTENT_CHANGE).alias("value"),
        F.lit(None).cast("string").alias("reason"),
        F.col("position"),
    )


def quarantine_records(rejected: DataFrame, topic: str) -> DataFrame:
    """schemas.QUARANTINE rows as records of the quarantine topic."""
    return rejected.select(
        F.lit(topic).alias("topic"),
        F.col("key"),
        quarantine.record_value().alias("value"),
        F.col("reason"),
        F.lit(None).cast("long").alias("position"),
    )


def waiting_records(waiting: DataFrame, topic: str) -> DataFrame:
    """schemas.WAITING_RECORD rows as records of the waiting room topic, keyed by their source
    record. A null pending_since_ms means "since this record's own timestamp" (parked now)."""
    record_id = F.concat_ws("/", F.col("topic"), F.col("partition").cast("string"), F.col("offset").cast("string"))
    return waiting.select(
        F.lit(topic).alias("topic"),
        record_id.alias("key"),
        F.to_json(F.struct(
            F.col("key"), F.col("value"), F.col("topic"), F.col("partition"), F.col("offset"),
            F.unix_millis(F.col("timestamp")).alias("timestamp_ms"), F.col("pending_since_ms"),
            F.col("content_id"),
        )).alias("value"),
        F.lit(None).cast("string").alias("reason"),
        F.lit(None).cast("long").alias("position"),
    )


def read_event_changes(kafka_df: DataFrame) -> DataFrame:
    """Records of the event changes topic (Kafka source columns) as schemas.CHANGE rows."""
    parsed = F.from_json(F.col("value").cast("string"), schemas.CHANGE, JSON_OPTIONS)
    return kafka_df.select(parsed.alias("change")).select(
        *(F.col(f"change.{field.name}").alias(field.name) for field in schemas.CHANGE.fields))


def read_content_changes(kafka_df: DataFrame) -> DataFrame:
    """Records of the content changes topic as schemas.CONTENT_CHANGE rows."""
    parsed = F.from_json(F.col("value").cast("string"), schemas.CONTENT_CHANGE, JSON_OPTIONS)
    return kafka_df.select(parsed.alias("change")).select(
        *(F.col(f"change.{field.name}").alias(field.name) for field in schemas.CONTENT_CHANGE.fields))
