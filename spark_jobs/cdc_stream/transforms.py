"""Pure DataFrame transforms of the CDC stream: Kafka records in, normalized changes out.

    Kafka rows -> source_records -> parse envelope -> clean -> validate -> enrich -> classified

Tombstones are set aside first. ``classify_events`` keeps every other record once, with the
first rule it fails as its ``_reason`` (null for a change), so every Kafka record ends up in
exactly one of {changes, quarantine, waiting, tombstones}. Rows carry their Kafka origin
(``_src_*`` columns), so a rejected record is quarantined, and a record whose content row has
not arrived yet is set aside as waiting, with its original key and value.

No rule reads the clock: the future-timestamp check is relative to the record's capture time
(its Kafka timestamp), so a replayed record is classified exactly as the first time, and the
plan holds no literal that changes from one micro-batch to the next.

The data rules come from ``cdc_platform.semantics``; here they are expressed as Spark column
expressions built from the same constants (no Python UDFs). No I/O happens in this module.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cdc_platform import semantics
from cdc_stream import quarantine as Q
from cdc_stream import schemas

OPS = ("c", "u", "d", "r")
DELETE = "d"
SNAPSHOT_READ = "r"

# The source record's columns, carried beside the change's own as ``_src_<name>``.
_SOURCE_FIELDS = ("topic", "partition", "offset", "key", "value", "timestamp", "pending_since_ms", "expired")


def _src(field: str) -> str:
    return f"_src_{field}"


SOURCE_COLUMNS = tuple(_src(field) for field in _SOURCE_FIELDS)
_REASON = "_reason"
# A _reason that is no rejection: the event waits for its content row (see classify_events).
WAITING = "waiting"
# The toastable columns (text, jsonb): where Debezium's unavailable-value placeholder can appear.
_EVENT_TEXT_COLUMNS = ("event_type", "device", "raw_payload")
_CONTENT_TEXT_COLUMNS = ("slug", "title", "content_type")
_UUID_PATTERN = r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\z"


@dataclass(frozen=True)
class EventBatch:
    changes: DataFrame      # schemas.CHANGE
    quarantine: DataFrame   # schemas.QUARANTINE
    waiting: DataFrame      # schemas.WAITING_RECORD: valid events whose content row has not arrived yet
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
    undefined = duration_ms.isNull() | length_seconds.isNull() | (length_seconds <= F.lit(0))
    return F.when(undefined, F.lit(None).cast("double")).otherwise(F.least(ratio, F.lit(float(semantics.PCT_CAP))))


def is_too_far_in_future(event_ts: Column, now: Column) -> Column:
    """semantics.is_too_far_in_future: event_ts > now + MAX_FUTURE_SKEW (``now``: the capture time)."""
    skew_micros = int(semantics.MAX_FUTURE_SKEW.total_seconds() * 1_000_000)
    return F.unix_micros(event_ts) > F.unix_micros(now) + F.lit(skew_micros)


def timestamp_in_range(ts: Column) -> Column:
    """semantics.timestamp_micros_in_range: a value every sink can hold (years 1 to 9999)."""
    return F.unix_micros(ts).between(F.lit(semantics.MIN_TIMESTAMP_MICROS), F.lit(semantics.MAX_TIMESTAMP_MICROS))


def holds_placeholder(placeholder: str, *cols: Column) -> Column:
    """Any of ``cols`` holds ``placeholder`` instead of the source's value: Debezium's for a TOASTed
    value it could not read, or the OversizedValueGuard's for a value too large to carry."""
    return functools.reduce(lambda a, b: a | b, (F.coalesce(c == F.lit(placeholder), F.lit(False)) for c in cols))


def _placeholder_reason(*cols: Column) -> Column:
    return (F.when(holds_placeholder(semantics.UNAVAILABLE_VALUE_PLACEHOLDER, *cols), F.lit(Q.UNAVAILABLE_VALUE))
            .when(holds_placeholder(semantics.OVERSIZED_VALUE_PLACEHOLDER, *cols), F.lit(Q.OVERSIZED_VALUE)))


def _is_uuid(col: Column) -> Column:
    return F.coalesce(col.rlike(_UUID_PATTERN), F.lit(False))


def tombstones(kafka_df: DataFrame) -> DataFrame:
    """The Kafka rows that are tombstones (null value after a delete): not changes, only counted."""
    return kafka_df.filter(F.col("value").isNull())


def count_tombstones(kafka_df: DataFrame) -> int:
    return tombstones(kafka_df).count()


def _split(df: DataFrame, reason: Column) -> tuple[DataFrame, DataFrame]:
    """Rows with a null reason go on (without the reason column); the others are quarantined."""
    tagged = df.withColumn(_REASON, reason)
    kept = tagged.filter(F.col(_REASON).isNull()).drop(_REASON)
    return kept, tagged.filter(F.col(_REASON).isNotNull()).select(*quarantine_columns())


def _no_reason() -> Column:
    return F.lit(None).cast("string")


def source_records(kafka_df: DataFrame) -> DataFrame:
    """Kafka source rows (schemas.KAFKA_SOURCE) as schemas.SOURCE_RECORD: text key and value, and
    the waiting-room columns of a record read for the first time. Rows that already have the
    SOURCE_RECORD shape (released from the waiting room) pass unchanged."""
    if "expired" in kafka_df.columns:
        return kafka_df
    return kafka_df.select(
        F.col("key").cast("string").alias("key"),
        F.col("value").cast("string").alias("value"),
        F.col("topic"), F.col("partition"), F.col("offset"), F.col("timestamp"),
        F.lit(None).cast("long").alias("pending_since_ms"),
        F.lit(False).alias("expired"),
    )


def _parse_envelope(kafka_df: DataFrame, envelope) -> DataFrame:
    """Non-tombstone rows with their Kafka origin, the parsed envelope ``_env`` and the row image ``_img``."""
    parsed = source_records(kafka_df).filter(F.col("value").isNotNull()).select(
        *(F.col(field).alias(_src(field)) for field in _SOURCE_FIELDS)
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


def parse_content(kafka_df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Parse content change records into (content changes as schemas.CONTENT_CHANGE, quarantine)."""
    parsed = _parse_envelope(kafka_df, schemas.CONTENT_ENVELOPE)
    is_delete = F.col("_env.op") == F.lit(DELETE)
    reason = (
        _envelope_reason()
        .when(~_is_uuid(F.col("_img.id")), F.lit(Q.MALFORMED_FIELD))
        .when(is_delete, _no_reason())
        .when(~F.coalesce(timestamp_in_range(F.timestamp_micros(F.col("_img.publish_ts"))), F.lit(True)),
              F.lit(Q.OUT_OF_RANGE_TIMESTAMP))
        .otherwise(_placeholder_reason(*(F.col(f"_img.{c}") for c in _CONTENT_TEXT_COLUMNS)))
    )
    kept, rejected = _split(parsed, reason)
    publish_ts = F.timestamp_micros(F.col("_img.publish_ts"))
    return kept.select(
        F.lower(F.col("_img.id")).alias("id"),
        F.col("_env.op").alias("op"),
        change_position().alias("position"),
        F.col("_img.slug").alias("slug"),
        F.col("_img.title").alias("title"),
        F.col("_img.content_type").alias("content_type"),
        F.col("_img.length_seconds").alias("length_seconds"),
        # A delete's before-image is never rejected; one it could not hold is dropped to null.
        F.when(timestamp_in_range(publish_ts), publish_ts).alias("publish_ts"),
    ), rejected


def change_position() -> Column:
    """The position every sink orders a row's changes by: the change's source LSN, but one below
    it for a snapshot read.

    Debezium stamps every snapshot row with the slot's consistent point C. A change streamed at
    exactly C belongs to a transaction that commits after C (a commit at or before C would put
    it in the snapshot), so it is the newer version and must win the tie. Left equal, the sinks
    split: Cassandra breaks equal write timestamps by comparing values, the Redis fences keep
    the first one applied (seen in CI: docs/snapshot-ordering.md)."""
    lsn = F.col("_env.source.lsn")
    return F.when(F.col("_env.op") == F.lit(SNAPSHOT_READ), lsn - F.lit(1)).otherwise(lsn)


def classify_events(kafka_df: DataFrame, content_lookup: DataFrame) -> DataFrame:
    """Every non-tombstone record of the events topic once, parsed, cleaned and enriched, with
    ``_reason``: null for a change, WAITING for a valid event whose content is unknown, or the
    reason it is quarantined. The rules apply in order (parsing, validation, content) and the
    first one that fails names the reason.

    One row per record lets a caller derive every output from one cached result: the JSON
    is parsed once, not once per output (see ``changes``, ``quarantine``, ``waiting``).
    ``content_lookup`` (id, length_seconds) must hold one row per id, so the join can never fan
    a change out; the job's catalogue is a dict, so it does.
    """
    parsed = _parse_envelope(kafka_df, schemas.ENGAGEMENT_EVENT_ENVELOPE)
    cleaned = parsed.select(
        *SOURCE_COLUMNS,
        _envelope_reason().otherwise(_no_reason()).alias("_parse_reason"),
        F.col("_img.id").alias("id"),
        F.col("_env.op").alias("op"),
        change_position().alias("position"),
        F.col("_env.source.ts_ms").alias("source_ts_ms"),
        F.lower(F.col("_img.content_id")).alias("content_id"),
        F.lower(F.col("_img.user_id")).alias("user_id"),
        normalize_event_type(F.col("_img.event_type")).alias("event_type"),
        F.timestamp_micros(F.col("_img.event_ts")).alias("event_ts"),
        F.col("_img.duration_ms").alias("duration_ms"),
        normalize_device(F.col("_img.device")).alias("device"),
        # Stays the JSON text Debezium sent; a delete's before-image may hold a placeholder instead.
        F.when(~holds_placeholder(semantics.UNAVAILABLE_VALUE_PLACEHOLDER, F.col("_img.raw_payload"))
               & ~holds_placeholder(semantics.OVERSIZED_VALUE_PLACEHOLDER, F.col("_img.raw_payload")),
               F.col("_img.raw_payload")).alias("raw_payload"),
        _placeholder_reason(*(F.col(f"_img.{c}") for c in _EVENT_TEXT_COLUMNS)).alias("_placeholder_reason"),
    )
    lookup = content_lookup.select(
        F.lower(F.col("id")).alias("_content_id"),
        F.col("length_seconds").cast("int").alias("length_seconds"),
    )
    joined = cleaned.join(F.broadcast(lookup), on=F.col("content_id") == F.col("_content_id"), how="left")
    reason = F.coalesce(F.col("_parse_reason"), _validation_reason(), _content_reason())
    # Only a delete can carry an event_ts no sink can hold (every other change with one is
    # quarantined): its before-image is informational, so that value becomes null.
    event_ts = F.when(timestamp_in_range(F.col("event_ts")), F.col("event_ts")).alias("event_ts")
    return joined.select(
        *(event_ts if c == "event_ts" else c for c in joined.columns
          if c not in ("_parse_reason", "_content_id", "_placeholder_reason")),
        engagement_pct(F.col("duration_ms"), F.col("length_seconds")).alias("engagement_pct"),
        reason.alias(_REASON),
    )


def _validation_reason() -> Column:
    """Deletes only need the row id (checked at parsing): a delete must always reach the sinks,
    whatever its before-image holds, so that a row never outlives its deletion.
    An event_ts is too far in the future relative to the record's capture time (its Kafka
    timestamp), so a replayed record is judged exactly as the first time."""
    return (
        F.when(F.col("op") == F.lit(DELETE), _no_reason())
        .when(functools.reduce(lambda a, b: a | b, (F.col(c).isNull() for c in semantics.REQUIRED_EVENT_FIELDS)),
              F.lit(Q.MISSING_REQUIRED_FIELD))
        .when(~_is_uuid(F.col("content_id")) | ~_is_uuid(F.col("user_id")), F.lit(Q.MALFORMED_FIELD))
        .when(F.col("duration_ms") < F.lit(0), F.lit(Q.NEGATIVE_DURATION))
        .when(~timestamp_in_range(F.col("event_ts")), F.lit(Q.OUT_OF_RANGE_TIMESTAMP))
        .when(F.col("_placeholder_reason").isNotNull(), F.col("_placeholder_reason"))
        .when(is_too_far_in_future(F.col("event_ts"), F.col("_src_timestamp")), F.lit(Q.FUTURE_EVENT_TS))
    )


def _content_reason() -> Column:
    """A non-delete change whose content is unknown waits for it, unless its wait has expired
    (``_src_expired``, decided by the waiting room): then it is quarantined. A delete never waits."""
    content_unknown = (F.col("op") != F.lit(DELETE)) & F.col("_content_id").isNull()
    return (
        F.when(content_unknown & F.col("_src_expired"), F.lit(Q.UNKNOWN_CONTENT))
        .when(content_unknown, F.lit(WAITING))
    )


def is_change() -> Column:
    return F.col(_REASON).isNull()


def is_waiting() -> Column:
    return F.coalesce(F.col(_REASON) == F.lit(WAITING), F.lit(False))


def is_quarantined() -> Column:
    return F.col(_REASON).isNotNull() & ~is_waiting()


def change_columns() -> list[Column]:
    """The normalized-change contract (schemas.CHANGE): exactly these columns, in this order."""
    return [F.col(field.name).cast(field.dataType).alias(field.name) for field in schemas.CHANGE.fields]


def _record_columns(schema, **sources: str) -> list[Column]:
    """``schema``'s columns in its order, each the source record's column of its name unless
    ``sources`` names another."""
    return [F.col(sources.get(field.name, _src(field.name))).alias(field.name) for field in schema.fields]


def quarantine_columns() -> list[Column]:
    """schemas.QUARANTINE: the original record and why it was rejected."""
    return _record_columns(schemas.QUARANTINE, reason=_REASON, captured_at=_src("timestamp"))


def waiting_columns() -> list[Column]:
    """schemas.WAITING_RECORD: the original record and the content it waits for."""
    return _record_columns(schemas.WAITING_RECORD, content_id="content_id")


def process_events(kafka_df: DataFrame, content_lookup: DataFrame) -> EventBatch:
    """The whole event path: records of the events topic (schemas.KAFKA_SOURCE or SOURCE_RECORD)
    -> changes, quarantine, waiting, tombstones."""
    classified = classify_events(kafka_df, content_lookup)
    return EventBatch(
        classified.filter(is_change()).select(*change_columns()),
        classified.filter(is_quarantined()).select(*quarantine_columns()),
        classified.filter(is_waiting()).select(*waiting_columns()),
        tombstones(kafka_df),
    )
