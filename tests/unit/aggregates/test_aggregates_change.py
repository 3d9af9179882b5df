"""Change validation and the sink's row -> Change conversion (no services)."""
from __future__ import annotations

import math

import pytest

from cdc_platform.aggregates import ApplyStats, Change
from cdc_stream.redis_sink import to_change

ROW = {"id": 3, "op": "u", "position": 2**60 + 1, "content_id": "c-1", "event_ts": 1_700_000_000_123_456,
       "device": "tv", "engagement_pct": 0.75}


def test_row_becomes_change_keeping_large_positions_exact():
    assert to_change(ROW) == Change(3, "u", 2**60 + 1, "c-1", 1_700_000_000_123, "tv", 0.75)


def test_nulls_pass_through():
    change = to_change({**ROW, "content_id": None, "event_ts": None, "device": None, "engagement_pct": None})
    assert (change.content_id, change.event_ts_ms, change.device, change.engagement_pct) == (None, None, None, None)


@pytest.mark.parametrize("field, value, message", [
    ("id", None, "without an id"),
    ("position", None, "without a position"),
    ("op", "x", "op 'x' is not one of"),
    ("position", -1, "non-negative"),
    ("engagement_pct", math.nan, "finite"),
])
def test_invalid_rows_are_rejected_with_a_reason(field, value, message):
    with pytest.raises(ValueError, match=message):
        to_change({**ROW, field: value})


def test_stats_add_up():
    assert ApplyStats(1, 2, 3) + ApplyStats(10, 20, 30) == ApplyStats(11, 22, 33)
