"""Explicit schemas of the Debezium messages the stream reads.

The connector uses JsonConverter with ``schemas.enable=false`` and ``time.precision.mode=adaptive``:
TIMESTAMP columns arrive as epoch microseconds (long), UUIDs as strings, JSONB as JSON text.
"""
from __future__ import annotations

from pyspark.sql import types as T

from cdc_platform import source_schema

# The column Spark's JSON reader fills with the raw text when a message does not fit the schema.
CORRUPT_RECORD = "_corrupt_record"

SOURCE = T.StructType([
    T.StructField("version", T.StringType()),
    T.StructField("connector", T.StringType()),
    T.StructField("name", T.StringType()),
    T.StructField("ts_ms", T.LongType()),
    T.StructField("snapshot", T.StringType()),
    T.StructField("db", T.StringType()),
    T.StructField("sequence", T.StringType()),
    T.StructField("schema", T.StringType()),
    T.StructField("table", T.StringType()),
    T.StructField("txId", T.LongType()),
    T.StructField("lsn", T.LongType()),
    T.StructField("xmin", T.LongType()),
])

# How Debezium's JSON (adaptive time precision, no schemas) carries each PostgreSQL type:
# timestamps as epoch micros, UUIDs as strings, JSONB as JSON text. If a producer ever sends a
# JSON object for a JSONB column, a string field keeps its raw JSON text, so it stays JSON text.
_SPARK_TYPE_OF = {
    "integer": T.IntegerType(),
    "uuid": T.StringType(),
    "text": T.StringType(),
    "jsonb": T.StringType(),
    "timestamp without time zone": T.LongType(),
}


def row_schema(columns: tuple[tuple[str, str], ...]) -> T.StructType:
    """A source table's row image, from its contract in cdc_platform.source_schema."""
    return T.StructType([T.StructField(name, _SPARK_TYPE_OF[pg_type]) for name, pg_type in columns])


ENGAGEMENT_EVENT_ROW = row_schema(source_schema.EVENTS_COLUMNS)
CONTENT_ROW = row_schema(source_schema.CONTENT_COLUMNS)


def envelope(row: T.StructType) -> T.StructType:
    """The Debezium change envelope around ``row``, plus the corrupt-record column."""
    return T.StructType([
        T.StructField("before", row),
        T.StructField("after", row),
        T.StructField("source", SOURCE),
        T.StructField("op", T.StringType()),
        T.StructField("ts_ms", T.LongType()),
        T.StructField(CORRUPT_RECORD, T.StringType()),
    ])


ENGAGEMENT_EVENT_ENVELOPE = envelope(ENGAGEMENT_EVENT_ROW)
CONTENT_ENVELOPE = envelope(CONTENT_ROW)

ENGAGEMENT_EVENT_KEY = T.StructType([T.StructField("id", T.IntegerType())])
CONTENT_KEY = T.StructType([T.StructField("id", T.StringType())])

# Columns of Spark's Kafka source that the transforms read.
KAFKA_SOURCE = T.StructType([
    T.StructField("key", T.BinaryType()),
    T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("timestamp", T.TimestampType()),
])

# A source record as the transforms read it: Kafka's columns with text key and value, plus the
# waiting room's bookkeeping (when it started waiting for its content, and whether it gave up).
SOURCE_RECORD = T.StructType([
    *(T.StructField(f.name, T.StringType()) if f.name in ("key", "value") else f for f in KAFKA_SOURCE.fields),
    T.StructField("pending_since_ms", T.LongType()),
    T.StructField("expired", T.BooleanType()),
])

# A valid event waiting for its content row: the source record and the content it waits for.
WAITING_RECORD = T.StructType([
    *(f for f in SOURCE_RECORD.fields if f.name != "expired"),
    T.StructField("content_id", T.StringType()),
])

# The normalized change: what the transforms emit and every sink consumes.
CHANGE = T.StructType([
    T.StructField("id", T.IntegerType()),
    T.StructField("op", T.StringType()),
    T.StructField("position", T.LongType()),
    T.StructField("source_ts_ms", T.LongType()),
    T.StructField("content_id", T.StringType()),
    T.StructField("user_id", T.StringType()),
    T.StructField("event_type", T.StringType()),
    T.StructField("event_ts", T.TimestampType()),
    T.StructField("duration_ms", T.IntegerType()),
    T.StructField("device", T.StringType()),
    T.StructField("raw_payload", T.StringType()),
    T.StructField("length_seconds", T.IntegerType()),
    T.StructField("engagement_pct", T.DoubleType()),
])

CONTENT_CHANGE = T.StructType([
    T.StructField("id", T.StringType()),
    T.StructField("op", T.StringType()),
    T.StructField("position", T.LongType()),
    T.StructField("slug", T.StringType()),
    T.StructField("title", T.StringType()),
    T.StructField("content_type", T.StringType()),
    T.StructField("length_seconds", T.IntegerType()),
    T.StructField("publish_ts", T.TimestampType()),
])

# The lookup that enrichment joins on.
CONTENT_LOOKUP = T.StructType([
    T.StructField("id", T.StringType()),
    T.StructField("length_seconds", T.IntegerType()),
])

QUARANTINE = T.StructType([
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("key", T.StringType()),
    T.StructField("value", T.StringType()),
    T.StructField("reason", T.StringType()),
    T.StructField("captured_at", T.TimestampType()),  # the source record's Kafka timestamp
])
