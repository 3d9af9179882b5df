from datetime import datetime, timedelta, timezone

import pytest

from cdc_platform import semantics


@pytest.mark.parametrize("duration,length,expected", [
    (30_000, 60, 0.5),
    (0, 60, 0.0),
    (None, 60, None),
    (30_000, None, None),
    (30_000, 0, None),
    (30_000, -60, None),
    (120_000, 60, semantics.PCT_CAP),
])
def test_engagement_pct(duration, length, expected):
    assert semantics.engagement_pct(duration, length) == expected


@pytest.mark.parametrize("raw,device", [
    ("Mobile", "mobile"), (" iPhone ", "mobile"), ("DESKTOP", "desktop"), ("ipad", "tablet"),
    ("Smart-TV", "tv"), ("fridge", "other"), (None, "other"), ("", "other"),
])
def test_normalize_device(raw, device):
    assert semantics.normalize_device(raw) == device


def test_devices_are_what_normalization_can_give():
    assert {semantics.normalize_device(alias) for alias in semantics.DEVICE_ALIASES} | {
        semantics.normalize_device("unknown")} == set(semantics.DEVICES)


def test_future_skew():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert semantics.is_too_far_in_future(now + semantics.MAX_FUTURE_SKEW + timedelta(seconds=1), now)
    assert not semantics.is_too_far_in_future(now + semantics.MAX_FUTURE_SKEW, now)
    assert not semantics.is_too_far_in_future(datetime(2026, 1, 1), now)


def test_idempotency_key_depends_on_row_and_position():
    assert semantics.idempotency_key(7, 100) == semantics.idempotency_key(7, 100)
    assert semantics.idempotency_key(7, 100) != semantics.idempotency_key(7, 101)
    assert semantics.idempotency_key(7, 100) != semantics.idempotency_key(71, 0)


def test_timestamps_in_range_are_exactly_years_1_to_9999():
    assert semantics.epoch_micros(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000
    assert semantics.timestamp_micros_in_range(semantics.epoch_micros(semantics.MIN_TIMESTAMP))
    assert semantics.timestamp_micros_in_range(semantics.epoch_micros(semantics.MAX_TIMESTAMP))
    assert not semantics.timestamp_micros_in_range(semantics.MIN_TIMESTAMP_MICROS - 1)
    assert not semantics.timestamp_micros_in_range(semantics.MAX_TIMESTAMP_MICROS + 1)
