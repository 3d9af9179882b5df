"""diff(): drift between two snapshots, as numbers per aggregate."""
from __future__ import annotations

import dataclasses

import pytest

from cdc_platform import names
from cdc_platform.aggregates import Row, RowContribution, diff, recompute

T0 = 1_700_000_000_000


@pytest.fixture
def expected():
    return recompute([
        Row(1, "a", T0, "mobile", 0.05, position=10),
        Row(2, "a", T0, "desktop", 0.5, position=11),
        Row(3, "b", T0, "desktop", None, position=12),
    ])


def test_identical_snapshots_have_zero_drift(expected):
    drift = diff(expected, expected)
    assert drift.is_zero and drift.total == 0
    assert all(v == {"missing": 0, "extra": 0, "mismatched": 0, "max_abs_error": 0.0}
               for v in drift.summary().values())


def test_missing_extra_and_mismatched_members_with_max_error(expected):
    actual = dataclasses.replace(expected, counts={"a": 5, "zz": 1})  # b missing, a wrong, zz extra
    drift = diff(expected, actual)
    counts = drift["counts"]
    assert counts.key == names.REDIS_COUNTS
    assert counts.missing == ("b",)
    assert counts.extra == ("zz",)
    assert counts.mismatched == (("a", 2, 5),)
    assert counts.max_abs_error == 3
    assert drift.total == 3 and not drift.is_zero
    assert all(drift[name].is_zero for name in drift.aggregates if name != "counts")


def test_tolerance_separates_rounding_from_drift(expected):
    nudged = dataclasses.replace(expected, avg_pct={k: v + 1e-12 for k, v in expected.avg_pct.items()})
    assert diff(expected, nudged, tolerance=1e-9).is_zero
    assert diff(expected, nudged, tolerance=1e-9)["avg_pct"].max_abs_error == pytest.approx(1e-12)
    off = dataclasses.replace(expected, avg_pct={k: v + 1e-6 for k, v in expected.avg_pct.items()})
    assert len(diff(expected, off, tolerance=1e-9)["avg_pct"].mismatched) == 1


def test_nested_aggregates_are_reported_per_field(expected):
    devices = {d: dict(f) for d, f in expected.devices.items()}
    devices["desktop"]["count"] = 7
    del devices["mobile"]["very_low_share"]
    minute = next(iter(expected.minute_buckets))
    buckets = {minute: dict(expected.minute_buckets[minute]), minute - 30: {"a": 1}}
    drift = diff(expected, dataclasses.replace(expected, devices=devices, minute_buckets=buckets,
                                               device_set=expected.device_set | {"tv"}))
    assert drift["devices"].mismatched == (("desktop/count", 2, 7),)
    assert drift["devices"].missing == ("mobile/very_low_share",)
    assert drift["devices"].max_abs_error == 5
    assert drift["minute_buckets"].extra == (f"{minute - 30}/a",)
    assert drift["device_set"].extra == ("tv",)


def test_row_fences_compare_contributions_not_positions(expected):
    rows = dict(expected.rows)
    rows[1] = dataclasses.replace(rows[1], position=999)
    assert diff(expected, dataclasses.replace(expected, rows=rows)).is_zero

    rows[2] = RowContribution(content_id="b", device="desktop", engagement_pct=0.5, minute=rows[2].minute)
    del rows[3]
    drift = diff(expected, dataclasses.replace(expected, rows=rows))["rows"]
    assert drift.mismatched == (("2/content_id", "a", "b"),)
    assert set(drift.missing) == {"3/content_id", "3/device", "3/minute"}
