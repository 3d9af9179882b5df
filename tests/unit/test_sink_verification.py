"""The source-side rules the end-state checks expect the stream to apply."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cdc_local import sink_verification
from cdc_platform import semantics

NOW = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
VALID = {"content_id": "c", "user_id": "u", "event_type": "play", "event_ts": datetime(2026, 11, 27),
         "event_ts_out_of_range": False, "duration_ms": 10, "length_known": True, "text_bytes": 100}


def test_a_valid_row_is_expected_in_the_sinks():
    assert sink_verification.source_rejection(VALID, NOW) is None


@pytest.mark.parametrize("field", semantics.REQUIRED_EVENT_FIELDS)
def test_a_row_missing_a_required_field_is_expected_in_quarantine(field):
    assert sink_verification.source_rejection({**VALID, field: None}, NOW) == semantics.MISSING_REQUIRED_FIELD


def test_a_blank_event_type_is_missing():
    assert sink_verification.source_rejection({**VALID, "event_type": " \t"}, NOW) == semantics.MISSING_REQUIRED_FIELD


def test_an_event_ts_a_datetime_cannot_hold_is_out_of_range_not_missing():
    row = {**VALID, "event_ts": None, "event_ts_out_of_range": True}
    assert sink_verification.source_rejection(row, NOW) == semantics.OUT_OF_RANGE_TIMESTAMP


def test_a_row_whose_text_exceeds_the_captured_value_limit_is_expected_in_quarantine():
    at_limit = {**VALID, "text_bytes": semantics.MAX_CAPTURED_VALUE_BYTES}
    over = {**VALID, "text_bytes": semantics.MAX_CAPTURED_VALUE_BYTES + 1}
    assert sink_verification.source_rejection(at_limit, NOW) is None
    assert sink_verification.source_rejection(over, NOW) == semantics.OVERSIZED_VALUE


def test_the_guard_limit_leaves_room_within_a_kafka_message():
    assert semantics.MAX_CAPTURED_VALUE_BYTES * 2 <= semantics.MAX_MESSAGE_BYTES
