"""The data rules: what a valid change is, how it is normalized and enriched, and the limits
every part of the pipeline takes.

Each rule's constants are defined here and nowhere else, with its Python form for one value
(``normalize_device``, ``engagement_pct``, ...). Two places restate rules in another form, from
these constants: the stream's transforms as Spark column expressions (tests/unit/stream/
test_transforms.py checks them against the Python forms), and
``cdc_local.sink_verification.source_rejection``, which judges a PostgreSQL row as the stream
would. The order in which the checks apply, when a change breaks several rules, is the
transforms' (``_validation_reason``).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

DEVICES = ("mobile", "desktop", "tablet", "tv", "other")
DEVICE_ALIASES = {
    "mobile": "mobile", "phone": "mobile", "android": "mobile", "ios": "mobile", "iphone": "mobile",
    "smartphone": "mobile",
    "desktop": "desktop", "web": "desktop", "pc": "desktop", "laptop": "desktop", "mac": "desktop",
    "tablet": "tablet", "ipad": "tablet",
    "tv": "tv", "smarttv": "tv", "smart_tv": "tv", "roku": "tv", "firetv": "tv",
}
# An event change (not a delete: it needs only its row id) missing one of these, after
# normalization (a blank event_type is missing), is quarantined as MISSING_REQUIRED_FIELD.
REQUIRED_EVENT_FIELDS = ("content_id", "user_id", "event_type", "event_ts")

# engagement_pct above 1 (watched longer than the content, e.g. replays) is capped at 1.0.
# This is the only place the cap is defined.
PCT_CAP = 1.0
# Device insights: share of events at or below / at or above these pct values.
VERY_LOW_PCT = 0.1
VERY_HIGH_PCT = 0.9
# Events stamped further than this into the future are quarantined.
MAX_FUTURE_SKEW = timedelta(hours=1)
# engagement_10m: rolling window of event time, kept as per-minute buckets.
ROLLING_WINDOW_MINUTES = 10
# How long the change topics keep a change, so how late any sink can be handed it again (a
# replay from a checkpoint or an offset reset). A deleted row's Redis fence must outlive that,
# so a replayed older insert stays a no-op; then it expires, so deletes do not fill Redis.
CHANGE_REPLAY_HORIZON_MS = 7 * 24 * 3600 * 1000
DELETED_ROW_FENCE_TTL_MS = CHANGE_REPLAY_HORIZON_MS + 24 * 3600 * 1000
# Timestamps every sink can hold: years 1 to 9999 (ISO-8601 four-digit years, Python's datetime,
# the REST events). PostgreSQL also stores BC dates and +/-infinity; those are quarantined.
MIN_TIMESTAMP = datetime(1, 1, 1, tzinfo=timezone.utc)
MAX_TIMESTAMP = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
# What Debezium sends for a TOASTed column it could not read (replica identity not FULL);
# the connector config sets it from here, and such a change is quarantined, never applied.
UNAVAILABLE_VALUE_PLACEHOLDER = "__debezium_unavailable_value"
# The largest Kafka message anywhere in the pipeline: broker, topics, Connect's producer, the
# stream's Kafka writes and the DLQ writer all take it. Cassandra takes mutations up to 16 MiB
# (half its 32 MiB commit-log segment), so a change that fits here fits there.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A captured change whose text would serialize to more than this (before- and after-image
# together) has its largest values replaced by OVERSIZED_VALUE_PLACEHOLDER in Kafka Connect
# (the OversizedValueGuard transform), before-image first; a change whose after-image holds
# the placeholder is quarantined as oversized_value. Half of MAX_MESSAGE_BYTES leaves room for
# the envelope and for the stream's own records, which carry the value again.
MAX_CAPTURED_VALUE_BYTES = MAX_MESSAGE_BYTES // 2
OVERSIZED_VALUE_PLACEHOLDER = "__cdc_oversized_value"


# Quarantine reasons: stable strings that dashboards, alerts and tools match on.
UNPARSEABLE_JSON = "unparseable_json"
SCHEMA_MISMATCH = "schema_mismatch"            # valid JSON, not a Debezium envelope of the expected types
MISSING_POSITION = "missing_position"
UNKNOWN_OP = "unknown_op"
MISSING_REQUIRED_FIELD = "missing_required_field"
MALFORMED_FIELD = "malformed_field"            # e.g. a UUID column holding something else
NEGATIVE_DURATION = "negative_duration"
FUTURE_EVENT_TS = "future_event_ts"
UNKNOWN_CONTENT = "unknown_content"
OUT_OF_RANGE_TIMESTAMP = "out_of_range_timestamp"   # BC, +/-infinity: outside MIN/MAX_TIMESTAMP
UNAVAILABLE_VALUE = "unavailable_value"            # a column holding UNAVAILABLE_VALUE_PLACEHOLDER
OVERSIZED_VALUE = "oversized_value"                # a column holding OVERSIZED_VALUE_PLACEHOLDER
QUARANTINE_REASONS = (
    UNPARSEABLE_JSON, SCHEMA_MISMATCH, MISSING_POSITION, UNKNOWN_OP, MISSING_REQUIRED_FIELD,
    MALFORMED_FIELD, NEGATIVE_DURATION, FUTURE_EVENT_TS, UNKNOWN_CONTENT, OUT_OF_RANGE_TIMESTAMP,
    UNAVAILABLE_VALUE, OVERSIZED_VALUE,
)


def normalize_device(raw: str | None) -> str:
    if raw is None:
        return "other"
    key = raw.strip().lower().replace("-", "").replace(" ", "")
    return DEVICE_ALIASES.get(key, "other")


def normalize_event_type(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip().lower().replace(" ", "_").replace("-", "_")
    return value or None


def engagement_pct(duration_ms: int | None, length_seconds: int | None) -> float | None:
    """duration_ms / (length_seconds * 1000), capped at PCT_CAP; None when undefined, which
    includes a length that is not positive (a negative pct would be counted as engagement)."""
    if duration_ms is None or length_seconds is None or length_seconds <= 0:
        return None
    return min(duration_ms / (length_seconds * 1000.0), PCT_CAP)


def is_too_far_in_future(event_ts: datetime, now: datetime | None = None) -> bool:
    """event_ts > now + MAX_FUTURE_SKEW; the stream takes ``now`` as the change's capture time."""
    now = now or datetime.now(timezone.utc)
    if event_ts.tzinfo is None:
        event_ts = event_ts.replace(tzinfo=timezone.utc)
    return event_ts > now + MAX_FUTURE_SKEW


def epoch_micros(ts: datetime) -> int:
    """Microseconds since 1970 UTC, exact (no float); a naive datetime is taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    delta = ts - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


MIN_TIMESTAMP_MICROS = epoch_micros(MIN_TIMESTAMP)
MAX_TIMESTAMP_MICROS = epoch_micros(MAX_TIMESTAMP)


def timestamp_micros_in_range(micros: int) -> bool:
    return MIN_TIMESTAMP_MICROS <= micros <= MAX_TIMESTAMP_MICROS


def idempotency_key(row_id: int, position: int) -> str:
    """Row id + source position (LSN): the same change always maps to the same key."""
    return f"{row_id}:{position}"


def minute_bucket(event_ts_ms: int) -> int:
    return event_ts_ms // 60_000


def canonical_json(payload) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


# The DLQ's retry rule: an entry is retried this many times, with exponential backoff from
# this base, before it is parked (the reprocess DAG's params default to these).
DLQ_MAX_ATTEMPTS = 5
DLQ_BACKOFF_S = 60.0
