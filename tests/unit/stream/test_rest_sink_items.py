"""How the REST sink turns normalized changes into delivery items."""
from __future__ import annotations

import decimal
from datetime import date, datetime, timezone

import pytest
from pyspark.sql import Row

from cdc_platform import semantics
from cdc_stream import change_log, schemas
from cdc_stream.rest_sink import (TIMESTAMP_COLUMNS, RestSinkStats, UnkeyedChange, build_item, json_safe,
                                  micros_to_iso)

CHANGE = {
    "id": 42, "op": "u", "position": 987654321, "source_ts_ms": 1_767_225_600_000,
    "content_id": "c0ffee00-0000-4000-8000-000000000001", "user_id": "u", "event_type": "play",
    "event_ts": 1_767_225_600_123_456, "duration_ms": 1500, "device": "mobile",
    "raw_payload": '{"a": 1}', "length_seconds": 60, "engagement_pct": 0.025,
}


def test_item_key_is_the_shared_idempotency_key():
    item = build_item(CHANGE, ["event_ts"])
    assert item.idempotency_key == semantics.idempotency_key(42, 987654321)


def test_item_event_is_the_change_with_timestamps_as_utc_iso():
    event = build_item(CHANGE, ["event_ts"]).event
    assert event["event_ts"] == "2026-01-01T00:00:00.123456+00:00"
    assert {k: v for k, v in event.items() if k != "event_ts"} == {k: v for k, v in CHANGE.items() if k != "event_ts"}


def test_null_timestamps_stay_null():
    assert build_item({**CHANGE, "event_ts": None}, ["event_ts"]).event["event_ts"] is None


@pytest.mark.parametrize("missing", ["id", "position"])
def test_a_change_without_its_key_columns_is_refused(missing):
    with pytest.raises(UnkeyedChange):
        build_item({**CHANGE, missing: None})


def test_json_safe_converts_python_values():
    assert json_safe({
        "ts": datetime(2026, 1, 1, 5, 0, tzinfo=timezone.utc),
        "naive": datetime(2026, 1, 1, 5, 0),
        "d": date(2026, 1, 2),
        "dec": decimal.Decimal("1.10"),
        "b": b"\x00\x01",
        "nested": Row(x=1, y=[datetime(2026, 1, 1, tzinfo=timezone.utc)]),
    }) == {
        "ts": "2026-01-01T05:00:00+00:00",
        "naive": "2026-01-01T05:00:00+00:00",
        "d": "2026-01-02",
        "dec": "1.10",
        "b": "AAE=",
        "nested": {"x": 1, "y": ["2026-01-01T00:00:00+00:00"]},
    }


def test_micros_before_the_epoch():
    assert micros_to_iso(-1) == "1969-12-31T23:59:59.999999+00:00"


def test_stats_add_up():
    assert RestSinkStats(1, 2, 3, 4) + RestSinkStats(10, 20, 30, 40) == RestSinkStats(11, 22, 33, 44)


def test_timestamps_ship_as_epoch_micros_whatever_the_session_time_zone(spark):
    values = dict(CHANGE, event_ts=datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=timezone.utc))
    df = spark.createDataFrame([Row(**values)], schema=schemas.CHANGE)
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/Los_Angeles")
    try:
        [record] = change_log.change_records(df, "changes").collect()
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    assert TIMESTAMP_COLUMNS == ("event_ts",)
    change = change_log.decode(record.value)
    assert change["event_ts"] == 1_767_225_600_123_456
    assert build_item(change, TIMESTAMP_COLUMNS).event["event_ts"] == "2026-01-01T00:00:00.123456+00:00"
