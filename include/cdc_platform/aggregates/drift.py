"""Comparison of two aggregate snapshots (pure): what is missing, extra or wrong, in numbers."""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Mapping

from cdc_platform import names

from .model import AggregateSnapshot

# Snapshot field -> the Redis key (or key pattern) it mirrors, for reports.
AGGREGATE_KEYS = {
    "counts": names.REDIS_COUNTS,
    "window_10m": names.REDIS_10M,
    "avg_pct": names.REDIS_AVG_PCT,
    "pct_sum": names.REDIS_PCT_SUM,
    "pct_count": names.REDIS_PCT_COUNT,
    "minute_buckets": names.REDIS_MINUTE_PREFIX + "*",
    "devices": names.REDIS_DEVICE_PREFIX + "*",
    "device_set": names.REDIS_DEVICES,
    "rows": names.REDIS_ROW_PREFIX + "*",
}


@dataclass(frozen=True)
class AggregateDrift:
    """Drift of one aggregate. Members are flattened to strings: a content id, or
    'minute/content_id', 'device/field', 'row_id/field' for the nested aggregates.

    max_abs_error is over every numeric difference, an absent member counting as 0.
    """

    name: str
    key: str
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, object, object], ...] = ()
    max_abs_error: float = 0.0

    @property
    def is_zero(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.mismatched)


@dataclass(frozen=True)
class Drift:
    aggregates: Mapping[str, AggregateDrift]

    def __getitem__(self, name: str) -> AggregateDrift:
        return self.aggregates[name]

    @property
    def is_zero(self) -> bool:
        return all(a.is_zero for a in self.aggregates.values())

    @property
    def total(self) -> int:
        return sum(a.total for a in self.aggregates.values())

    def summary(self) -> dict[str, dict[str, float]]:
        """Numbers per aggregate, for logs and metrics."""
        return {
            name: {"missing": len(a.missing), "extra": len(a.extra),
                   "mismatched": len(a.mismatched), "max_abs_error": a.max_abs_error}
            for name, a in self.aggregates.items()
        }


def _flat(snapshot: AggregateSnapshot, name: str) -> dict[str, object]:
    value = getattr(snapshot, name)
    if name == "minute_buckets":
        return {f"{minute}/{member}": score for minute, members in value.items() for member, score in members.items()}
    if name == "devices":
        return {f"{device}/{field}": v for device, fields in value.items() for field, v in fields.items()}
    if name == "device_set":
        return {device: 1 for device in value}
    if name == "rows":
        flat: dict[str, object] = {}
        for row_id, c in value.items():
            for field in ("content_id", "device", "engagement_pct", "minute"):
                v = getattr(c, field)
                if v is not None:
                    flat[f"{row_id}/{field}"] = v
        return flat
    return {str(k): v for k, v in value.items()}


def _numeric(v: object) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _diff_one(name: str, expected: dict[str, object], actual: dict[str, object], tolerance: float) -> AggregateDrift:
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    mismatched = []
    max_err = 0.0
    for k in missing:
        if _numeric(expected[k]):
            max_err = max(max_err, abs(float(expected[k])))
    for k in extra:
        if _numeric(actual[k]):
            max_err = max(max_err, abs(float(actual[k])))
    for k in sorted(expected.keys() & actual.keys()):
        e, a = expected[k], actual[k]
        if _numeric(e) and _numeric(a):
            err = abs(float(e) - float(a))
            max_err = max(max_err, err)
            if err > tolerance:
                mismatched.append((k, e, a))
        elif e != a:
            mismatched.append((k, e, a))
    return AggregateDrift(name=name, key=AGGREGATE_KEYS[name], missing=tuple(missing), extra=tuple(extra),
                          mismatched=tuple(mismatched), max_abs_error=max_err)


def diff(expected: AggregateSnapshot, actual: AggregateSnapshot, tolerance: float = 1e-9) -> Drift:
    """Drift of `actual` (usually Redis) from `expected` (usually a recompute).

    Row fences are compared by contribution, not by position: positions legitimately
    differ when the expected side does not know them.
    """
    return Drift({name: _diff_one(name, _flat(expected, name), _flat(actual, name), tolerance)
                  for name in AGGREGATE_KEYS})
