"""The normalized change topics: how the core query writes changes and the sink queries read them.

The content and core queries parse, validate and enrich each source record once and write the
result here as flat JSON (timestamps as epoch microseconds); each sink query hands the record's
text to its Python writer, which decodes it with ``decode``. Records are keyed by the row id, as
the source topics are, so a row's changes stay in order within a partition (the sinks do not
rely on it: every write is fenced by the change's source position).
"""
from __future__ import annotations

import json
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cdc_stream import quarantine, schemas, transforms

# What the core query hands to the Kafka writer; reason and position only feed its batch report.
OUTPUT_COLUMNS = ("topic", "key", "value", "reason", "position")


def _wire_json(columns: list[Column], schema) -> Column:
    """``columns`` (one per field of ``schema``) as the JSON text of a normalized record."""
    return F.to_json(F.struct(*(
        F.unix_micros(column).alias(field.name) if isinstance(field.dataType, T.TimestampType) else column
        for column, field in zip(columns, schema.fields))), {"ignoreNullFields": "false"})


def change_value() -> Column:
    """A change (the columns of ``transforms.classify_events``) as its normalized record."""
    return _wire_json(transforms.change_columns(), schemas.CHANGE)


def change_records(changes: DataFrame, topic: str) -> DataFrame:
    """schemas.CHANGE rows as records (topic, key, value) of the event changes topic."""
    return changes.select(F.lit(topic).alias("topic"), F.col("id").cast("string").alias("key"),
                          change_value().alias("value"))


def event_records(classified: DataFrame, *, changes_topic: str, quarantine_topic: str,
                  pending_topic: str, passed_topic: str | None = None,
                  repairs_topic: str | None = None) -> DataFrame:
    """Each row of ``transforms.classify_events`` as one record of the topic it belongs to: a
    change (schemas.CHANGE, keyed by row id), a quarantined record (keyed by its source key) or
    a waiting event (keyed by its source record, for the compacted waiting room).

    A record of ``passed_topic`` (another source topic read by the same query) is no event: it
    passes as its source record (the waiting room's JSON), under its own topic name, for the
    caller to process with that topic's transforms. A record of ``repairs_topic`` is a normalized
    change already (the platform's own repairs write them): it passes as a change, as it is."""
    change, waiting = transforms.is_change(), transforms.is_waiting()
    passed = F.col("_src_topic") == F.lit(passed_topic) if passed_topic else F.lit(False)
    repair = F.col("_src_topic") == F.lit(repairs_topic) if repairs_topic else F.lit(False)
    record_id = F.concat_ws("/", F.col("_src_topic"), F.col("_src_partition").cast("string"),
                            F.col("_src_offset").cast("string"))
    names = (field.name for field in schemas.WAITING_RECORD.fields)
    waiting_fields = [F.unix_millis(c).alias("timestamp_ms") if name == "timestamp" else c
                      for name, c in zip(names, transforms.waiting_columns())]
    source_record = F.to_json(F.struct(*waiting_fields))
    as_is = passed | repair
    return classified.select(
        F.when(passed, F.col("_src_topic")).when(repair | change, F.lit(changes_topic))
        .when(waiting, F.lit(pending_topic)).otherwise(F.lit(quarantine_topic)).alias("topic"),
        F.when(passed, record_id).when(repair, F.col("_src_key")).when(change, F.col("id").cast("string"))
        .when(waiting, record_id).otherwise(F.col("_src_key")).alias("key"),
        F.when(passed, source_record).when(repair, F.col("_src_value")).when(change, change_value())
        .when(waiting, source_record)
        .otherwise(F.to_json(F.struct(*transforms.quarantine_columns()))).alias("value"),
        F.when(~as_is & transforms.is_quarantined(), F.col("_reason")).alias("reason"),
        F.when(~as_is & change, F.col("position")).alias("position"),
    )


def content_change_records(content_changes: DataFrame, topic: str) -> DataFrame:
    """schemas.CONTENT_CHANGE rows as records of the content changes topic."""
    return content_changes.select(
        F.lit(topic).alias("topic"),
        F.col("id").alias("key"),
        _wire_json([F.col(field.name) for field in schemas.CONTENT_CHANGE.fields], schemas.CONTENT_CHANGE)
        .alias("value"),
        F.lit(None).cast("string").alias("reason"),
        F.lit(None).cast("long").alias("position"),
    )


def quarantine_records(rejected: DataFrame, topic: str) -> DataFrame:
    """schemas.QUARANTINE rows as records of the quarantine topic."""
    records = quarantine.to_kafka_records(rejected)
    return records.select(
        F.lit(topic).alias("topic"), F.col("key"), F.col("value"), F.col("reason"),
        F.lit(None).cast("long").alias("position"),
    )


def decode(value: bytes | str) -> dict[str, Any]:
    """One record of a normalized topic as a dict; timestamps are epoch microseconds (ints).

    The sinks decode in Python: handing the JVM's JSON parse and a typed row per column to the
    Python workers cost more than the JSON text itself, for every sink."""
    return json.loads(value)
