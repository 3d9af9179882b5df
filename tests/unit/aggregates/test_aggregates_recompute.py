"""recompute(): the from-scratch definition every Redis aggregate is checked against."""
from __future__ import annotations

import pytest

from cdc_platform import semantics
from cdc_platform.aggregates import Row, pct_band, recompute

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE  # a minute boundary


def test_counts_and_mean_pct_skip_rows_without_pct():
    snap = recompute([
        Row(1, "a", T0, "mobile", 0.2),
        Row(2, "a", T0, "mobile", 0.6),
        Row(3, "a", T0, "desktop", None),
        Row(4, "b", T0, "desktop", None),
    ])
    assert snap.counts == {"a": 3, "b": 1}
    assert snap.pct_sum == pytest.approx({"a": 0.8})
    assert snap.pct_count == {"a": 2}
    assert snap.avg_pct == pytest.approx({"a": 0.4})


def test_window_is_the_clock_minute_and_the_minutes_before_it():
    w = semantics.ROLLING_WINDOW_MINUTES
    end = T0 + 30 * MINUTE + 59_999
    rows = [
        Row(1, "a", end, "tv", None),                              # the clock's own minute
        Row(2, "a", T0 + (30 - (w - 1)) * MINUTE, "tv", None),     # first minute of the window
        Row(3, "b", T0 + (30 - w) * MINUTE + 59_999, "tv", None),  # last millisecond before it
    ]
    snap = recompute(rows)
    assert snap.max_event_ts_ms == end
    assert snap.window_end_minute == semantics.minute_bucket(end)
    assert snap.window_10m == {"a": 2}
    assert snap.minute_buckets == {semantics.minute_bucket(end): {"a": 1},
                                   semantics.minute_bucket(T0) + 30 - (w - 1): {"a": 1}}
    assert snap.counts == {"a": 2, "b": 1}


def test_explicit_clock_overrides_the_rows_latest_event():
    rows = [Row(1, "a", T0, "tv", None)]
    later = T0 + (semantics.ROLLING_WINDOW_MINUTES + 5) * MINUTE
    snap = recompute(rows, window_end_ms=later)
    assert snap.window_end_minute == semantics.minute_bucket(later)
    assert snap.window_10m == {} and snap.minute_buckets == {}
    assert snap.counts == {"a": 1}


def test_device_insights_use_threshold_boundaries_and_rows_with_pct_as_denominator():
    snap = recompute([
        Row(1, "a", T0, "mobile", semantics.VERY_LOW_PCT),    # low, inclusive
        Row(2, "a", T0, "mobile", semantics.VERY_HIGH_PCT),   # high, inclusive
        Row(3, "a", T0, "mobile", 0.5),
        Row(4, "a", T0, "mobile", None),                      # counted, not in pct stats
        Row(5, "a", T0, "desktop", None),
    ])
    mobile = snap.devices["mobile"]
    assert mobile["count"] == 4
    assert mobile["pct_count"] == 3
    assert mobile["very_low"] == 1 and mobile["very_high"] == 1
    assert mobile["mean_pct"] == pytest.approx((0.1 + 0.9 + 0.5) / 3)
    assert mobile["very_low_share"] == pytest.approx(1 / 3)
    assert mobile["very_high_share"] == pytest.approx(1 / 3)
    assert snap.devices["desktop"] == {"count": 1, "pct_sum": 0, "pct_count": 0, "very_low": 0, "very_high": 0}
    assert snap.device_set == {"mobile", "desktop"}


def test_null_content_counts_for_devices_only_and_null_device_for_content_only():
    snap = recompute([Row(1, None, T0, "tablet", 0.95), Row(2, "a", T0, None, 0.3)])
    assert snap.counts == {"a": 1}
    assert snap.avg_pct == pytest.approx({"a": 0.3})
    assert set(snap.devices) == {"tablet"}
    assert snap.devices["tablet"]["very_high_share"] == 1
    assert snap.rows[1].content_id is None and snap.rows[2].device is None


def test_rows_record_each_contribution_with_its_position():
    snap = recompute(iter([Row(7, "a", T0 + 5, "tv", 0.25, position=42)]))
    c = snap.rows[7]
    assert (c.content_id, c.device, c.engagement_pct, c.minute, c.position) == (
        "a", "tv", 0.25, semantics.minute_bucket(T0), 42)


def test_no_rows_is_an_empty_snapshot_without_a_window():
    snap = recompute([])
    assert snap.counts == {} and snap.devices == {} and snap.rows == {}
    assert snap.window_end_minute is None and snap.max_event_ts_ms is None


def test_a_row_id_given_twice_is_an_error():
    with pytest.raises(ValueError, match="row id 1 given twice"):
        recompute([Row(1, "a", T0, "tv", None), Row(1, "b", T0, "tv", None)])


@pytest.mark.parametrize("pct, band", [
    (None, ""), (0.0, "low"), (semantics.VERY_LOW_PCT, "low"), (0.5, ""),
    (semantics.VERY_HIGH_PCT, "high"), (semantics.PCT_CAP, "high"),
])
def test_pct_band(pct, band):
    assert pct_band(pct) == band
