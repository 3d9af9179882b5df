"""Pure DataFrame transforms of the CDC stream: Kafka records in, normalized changes out.

    Kafka rows -> parse_events -> clean -> validate -> enrich -> select_changes -> changes

Tombstones are set aside first; parse_events, validate and enrich each split their input into
rows that go on and rows quarantined with a reason, so every Kafka record ends up in exactly one
of {changes, quarantine, tombstones}. Until the final ``select_changes``, rows carry their Kafka
origin (``_src_*`` columns), so a record rejected at any stage is quarantined with its original
key and value.

The data rules come from ``cdc_platform.semantics``; here they are expressed as Spark column
expressions built from the same constants (no Python UDFs). No I/O happens in this module.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdc_platform import semantics
from cdc_stream import quarantine as Q
from cdc_stream import schemas

OPS = ("c", "u", "d", "r")
DELETE = "d"

SOURCE_COLUMNS = ("_src_topic", "_src_partition", "_src_offset", "_src_key", "_src_value")
_REASON = "_reason"
_UUID_PATTERN = r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\z"


@dataclass(frozen=True)
class EventBatch:
    changes: DataFrame      # schemas.CHANGE
    quarantine: DataFrame   # schemas.QUARANTINE
    tombstones: DataFrame   # the Kafka rows with a null value


@functools.cache
def _python_whitespace_class() -> str:
    """A Java regex character class of exactly what Python's ``str.strip()`` removes."""
    chars = (chr(code) for code in range(0x110000))
    return "[" + "".join(f"\\x{{{ord(ch):x}}}" for ch in chars if ch.isspace()) + "]"


def _strip(col: Column) -> Column:
    # F.trim only removes ASCII spaces; semantics uses str.strip(), which removes all whitespace.
    ws = _python_whitespace_class()
    return F.regexp_replace(col, rf"\A{ws}+|{ws}+\z", "")


def normalize_event_type(col: Column) -> Column:
    """semantics.normalize_event_type: strip, lower, spaces and dashes to underscores, '' -> null."""
    value = F.translate(F.lower(_strip(col)), " -", "__")
    return F.when(value == F.lit(""), F.lit(None).cast("string")).otherwise(value)


@functools.cache
def _device_alias_pairs() -> tuple[tuple[str, str], ...]:
    return tuple(sorted(semantics.DEVICE_ALIASES.items()))


def normalize_device(col: Column) -> Column:
    """semantics.normalize_device: alias lookup on the stripped, lowered, dash/space-free value."""
    aliases = F.create_map(*itertools.chain.from_iterable(
        (F.lit(alias), F.lit(device)) for alias, device in _device_alias_pairs()))
    key = F.translate(F.lower(_strip(col)), "- ", "")
    return F.coalesce(F.try_element_at(aliases, key), F.lit("other"))


def engagement_pct(duration_ms: Column, length_seconds: Column) -> Column:
    """semantics.engagement_pct: duration / (length * 1000), capped at PCT_CAP; null if undefined."""
    # Doubles before multiplying: length_seconds * 1000 overflows int (and ANSI mode raises).
    ratio = duration_ms.cast("double") / (length_seconds.cast("double") * F.lit(1000.0))
    undefined = duration_ms.isNull() | length_seconds.isNull() | (length_seconds == F.lit(0))
    return F.when(undefined, F.lit(None).cast("double")).otherwise(F.least(ratio, F.lit(float(semantics.PCT_CAP))))


def is_too_far_in_future(event_ts: Column, now: Column) -> Column:
    """semantics.is_too_far_in_future: event_ts > now + MAX_FUTURE_SKEW."""
    skew_micros = int(semantics.MAX_FUTURE_SKEW.total_seconds() * 1_000_000)
    return F.unix_micros(event_ts) > F.unix_micros(now) + F.lit(skew_micros)


def _now(now: datetime | None) -> Column:
    if now is None:
        return F.current_timestamp()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return F.lit(now).cast("timestamp")


def _is_uuid(col: Column) -> Column:
    return F.coalesce(col.rlike(_UUID_PATTERN), F.lit(False))


def tombstones(kafka_df: DataFrame) -> DataFrame:
    """The Kafka rows that are tombstones (null value after a delete): not changes, only counted."""
    return kafka_df.filter(F.col("value").isNull())


def count_tombstones(kafka_df: DataFrame) -> int:
    return tombstones(kafka_df).count()


def _to_quarantine(rejected: DataFrame, now: datetime | None) -> DataFrame:
    return rejected.select(
        F.col("_src_topic").alias("topic"),
        F.col("_src_partition").alias("partition"),
        F.col("_src_offset").alias("offset"),
        F.col("_src_key").alias("key"),
        F.col("_src_value").alias("value"),
        F.col(_REASON).alias("reason"),
        _now(now).alias("detected_at"),
    )


def _split(df: DataFrame, reason: Column, now: datetime | None) -> tuple[DataFrame, DataFrame]:
    """Rows with a null reason go on (without the reason column); the others are quarantined."""
    tagged = df.withColumn(_REASON, reason)
    kept = tagged.filter(F.col(_REASON).isNull()).drop(_REASON)
    return kept, _to_quarantine(tagged.filter(F.col(_REASON).isNotNull()), now)


def _no_reason() -> Column:
    return F.lit(None).cast("string")


def _parse_envelope(kafka_df: DataFrame, envelope) -> DataFrame:
    """Non-tombstone rows with their Kafka origin, the parsed envelope ``_env`` and the row image ``_img``."""
    parsed = kafka_df.filter(F.col("value").isNotNull()).select(
        F.col("topic").alias("_src_topic"),
        F.col("partition").alias("_src_partition"),
        F.col("offset").alias("_src_offset"),
        F.col("key").cast("string").alias("_src_key"),
        F.col("value").cast("string").alias("_src_value"),
    ).withColumn(
        "_env",
        F.from_json(F.col("_src_value"), envelope,
                    {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": schemas.CORRUPT_RECORD}),
    )
    # A delete's fields come from the before-image; every other op's from the after-image.
    image = F.when(F.col("_env.op") == F.lit(DELETE), F.col("_env.before")).otherwise(F.col("_env.after"))
    return parsed.withColumn("_img", image)


def _envelope_reason() -> Column:
    """Reasons shared by every topic; an open CASE the caller extends with ``.when`` and closes."""
    env = F.col("_env")
    not_an_envelope = env.isNull() | env[schemas.CORRUPT_RECORD].isNotNull()
    return (
        F.when(not_an_envelope & F.try_parse_json(F.col("_src_value")).isNull(), F.lit(Q.UNPARSEABLE_JSON))
        .when(not_an_envelope, F.lit(Q.SCHEMA_MISMATCH))
        .when(F.col("_env.source.lsn").isNull(), F.lit(Q.MISSING_POSITION))
        .when(~F.coalesce(F.col("_env.op").isin(*OPS), F.lit(False)), F.lit(Q.UNKNOWN_OP))
        .when(F.col("_img").isNull() | F.col("_img.id").isNull(), F.lit(Q.MISSING_REQUIRED_FIELD))
    )


def parse_events(kafka_df: DataFrame, now: datetime | None = None) -> tuple[DataFrame, DataFrame]:
    """Parse engagement_events change records (Kafka source columns) into (parsed, quarantine).

    Tombstones are excluded from both (see ``tombstones``). ``parsed`` has the row image's
    columns as Debezium sends them (event_ts in epoch micros) plus op, position, source_ts_ms
    and the ``_src_*`` origin columns.
    """
    parsed = _parse_envelope(kafka_df, schemas.ENGAGEMENT_EVENT_ENVELOPE)
    kept, rejected = _split(parsed, _envelope_reason().otherwise(_no_reason()), now)
    return kept.select(
        F.col("_img.id").alias("id"),
        F.col("_env.op").alias("op"),
        F.col("_env.source.lsn").alias("position"),
        F.col("_env.source.ts_ms").alias("source_ts_ms"),
        F.col("_img.content_id").alias("content_id"),
        F.col("_img.user_id").alias("user_id"),
        F.col("_img.event_type").alias("event_type"),
        F.col("_img.event_ts").alias("event_ts"),
        F.col("_img.duration_ms").alias("duration_ms"),
        F.col("_img.device").alias("device"),
        F.col("_img.raw_payload").alias("raw_payload"),
        *SOURCE_COLUMNS,
    ), rejected


def parse_content(kafka_df: DataFrame, now: datetime | None = None) -> tuple[DataFrame, DataFrame]:
    """Parse content change records into (content changes as schemas.CONTENT_CHANGE, quarantine)."""
    parsed = _parse_envelope(kafka_df, schemas.CONTENT_ENVELOPE)
    reason = (
        _envelope_reason()
        .when(~_is_uuid(F.col("_img.id")), F.lit(Q.MALFORMED_FIELD))
        .otherwise(_no_reason())
    )
    kept, rejected = _split(parsed, reason, now)
    return kept.select(
        F.lower(F.col("_img.id")).alias("id"),
        F.col("_env.op").alias("op"),
        F.col("_env.source.lsn").alias("position"),
        F.col("_img.slug").alias("slug"),
        F.col("_img.title").alias("title"),
        F.col("_img.content_type").alias("content_type"),
        F.col("_img.length_seconds").alias("length_seconds"),
        F.timestamp_micros(F.col("_img.publish_ts")).alias("publish_ts"),
    ), rejected


def clean(parsed: DataFrame) -> DataFrame:
    """Normalize event_type, device and the UUIDs' case; event_ts from epoch micros to a timestamp.

    raw_payload stays the JSON text Debezium sent.
    """
    return parsed.select(
        F.col("id"),
        F.col("op"),
        F.col("position"),
        F.col("source_ts_ms"),
        F.lower(F.col("content_id")).alias("content_id"),
        F.lower(F.col("user_id")).alias("user_id"),
        normalize_event_type(F.col("event_type")).alias("event_type"),
        F.timestamp_micros(F.col("event_ts")).alias("event_ts"),
        F.col("duration_ms"),
        normalize_device(F.col("device")).alias("device"),
        F.col("raw_payload"),
        *SOURCE_COLUMNS,
    )


def validate(cleaned: DataFrame, now: datetime | None = None) -> tuple[DataFrame, DataFrame]:
    """Split cleaned changes into (valid, quarantine).

    Deletes only need the row id (checked at parsing): a delete must always reach the sinks,
    whatever its before-image holds, so that a row never outlives its deletion.
    ``now`` defaults to current_timestamp(), which Spark evaluates per job: when the kept rows
    and the quarantine are computed by different jobs, pass one fixed ``now`` for both.
    """
    required = ("content_id", "user_id", "event_type", "event_ts")
    reason = (
        F.when(F.col("op") == F.lit(DELETE), _no_reason())
        .when(functools.reduce(lambda a, b: a | b, (F.col(c).isNull() for c in required)),
              F.lit(Q.MISSING_REQUIRED_FIELD))
        .when(~_is_uuid(F.col("content_id")) | ~_is_uuid(F.col("user_id")), F.lit(Q.MALFORMED_FIELD))
        .when(F.col("duration_ms") < F.lit(0), F.lit(Q.NEGATIVE_DURATION))
        .when(is_too_far_in_future(F.col("event_ts"), _now(now)), F.lit(Q.FUTURE_EVENT_TS))
        .otherwise(_no_reason())
    )
    return _split(cleaned, reason, now)


def enrich(valid: DataFrame, content_lookup: DataFrame, now: datetime | None = None) -> tuple[DataFrame, DataFrame]:
    """Join content length (content_lookup: id, length_seconds) and compute engagement_pct.

    Returns (enriched, quarantine). A non-delete change whose content is unknown is quarantined;
    a delete is never rejected for unknown content. ``content_lookup`` holds one row per id
    (it is the content table); duplicates are dropped so a change can never fan out.
    """
    lookup = content_lookup.select(
        F.lower(F.col("id")).alias("_content_id"),
        F.col("length_seconds").cast("int").alias("_content_length_seconds"),
    ).dropDuplicates(["_content_id"])
    joined = valid.join(F.broadcast(lookup), on=F.col("content_id") == F.col("_content_id"), how="left")
    reason = (
        F.when((F.col("op") != F.lit(DELETE)) & F.col("_content_id").isNull(), F.lit(Q.UNKNOWN_CONTENT))
        .otherwise(_no_reason())
    )
    kept, rejected = _split(joined, reason, now)
    enriched = (
        kept.withColumn("length_seconds", F.col("_content_length_seconds"))
        .withColumn("engagement_pct", engagement_pct(F.col("duration_ms"), F.col("length_seconds")))
        .drop("_content_id", "_content_length_seconds")
    )
    return enriched, rejected


def select_changes(enriched: DataFrame) -> DataFrame:
    """The normalized-change contract (schemas.CHANGE): exactly these columns, in this order."""
    return enriched.select(*(F.col(field.name).cast(field.dataType).alias(field.name)
                             for field in schemas.CHANGE.fields))


def process_events(kafka_df: DataFrame, content_lookup: DataFrame, now: datetime | None = None) -> EventBatch:
    """The whole event path: Kafka rows of the events topic -> changes, quarantine, tombstones."""
    parsed, rejected_parse = parse_events(kafka_df, now)
    valid, rejected_validation = validate(clean(parsed), now)
    enriched, rejected_enrichment = enrich(valid, content_lookup, now)
    quarantined = rejected_parse.unionByName(rejected_validation).unionByName(rejected_enrichment)
    return EventBatch(select_changes(enriched), quarantined, tombstones(kafka_df))
