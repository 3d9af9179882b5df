"""Value types shared by the Redis writer, the recompute and the drift report."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

from cdc_platform import semantics

OPS = ("c", "u", "d", "r")

# Fields of a device-insights hash. The derived ones exist only while pct_count > 0.
DEVICE_COUNTERS = ("count", "pct_sum", "pct_count", "very_low", "very_high")
DEVICE_DERIVED = ("mean_pct", "very_low_share", "very_high_share")


def window_start_minute(window_end_minute: int) -> int:
    """First epoch minute of the engagement_10m window ending at window_end_minute (inclusive)."""
    return window_end_minute - semantics.ROLLING_WINDOW_MINUTES + 1


def pct_band(pct: float | None) -> str:
    """'low', 'high' or '' for a pct, by the device-insight thresholds in semantics.

    Decided in Python only: the Lua script receives and stores the band, so both
    sides classify identically and an undo reverses exactly what was applied.
    """
    if pct is None:
        return ""
    if pct <= semantics.VERY_LOW_PCT:
        return "low"
    if pct >= semantics.VERY_HIGH_PCT:
        return "high"
    return ""


@dataclass(frozen=True)
class Change:
    """One normalized change to an engagement_events row, as the Redis sink needs it.

    For op 'd' the fields describe the before-image; only id and position matter.
    """

    id: int
    op: str
    position: int
    content_id: str | None = None
    event_ts_ms: int | None = None
    device: str | None = None
    engagement_pct: float | None = None

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"change for row {self.id}: op {self.op!r} is not one of {OPS}")
        if not isinstance(self.position, int) or self.position < 0:
            raise ValueError(f"change for row {self.id}: position must be a non-negative int, got {self.position!r}")
        if self.engagement_pct is not None and not math.isfinite(self.engagement_pct):
            raise ValueError(f"change for row {self.id}: engagement_pct must be finite, got {self.engagement_pct!r}")


@dataclass(frozen=True)
class Row:
    """A current row, as the recompute needs it. position is the source LSN when known
    (Cassandra's writetime); repair() uses it to rebuild the row fence."""

    id: int
    content_id: str | None
    event_ts_ms: int | None
    device: str | None
    engagement_pct: float | None
    position: int | None = None


@dataclass(frozen=True)
class RowContribution:
    """What one live row currently adds to the aggregates (the fence's payload)."""

    content_id: str | None
    device: str | None
    engagement_pct: float | None
    minute: int | None
    position: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ApplyStats:
    applied: int = 0
    skipped_stale: int = 0
    rejected: int = 0

    def __add__(self, other: "ApplyStats") -> "ApplyStats":
        return ApplyStats(self.applied + other.applied,
                          self.skipped_stale + other.skipped_stale,
                          self.rejected + other.rejected)


@dataclass(frozen=True)
class Watermark:
    """How far Redis has got.

    max_event_ts_ms is the event-time clock of engagement_10m: the largest event_ts of
    any change delivered, applied or stale, so it does not depend on arrival order.
    max_position is the largest position applied; with several Kafka partitions the
    changes below it are not guaranteed to all be applied yet.
    applied and repairs change with every state change, so two equal watermarks
    bracket a consistent read.
    """

    batch_id: int | None = None
    max_position: int | None = None
    max_event_ts_ms: int | None = None
    window_end_minute: int | None = None
    applied: int = 0
    repairs: int = 0
    batch_committed_ms: int | None = None

    def state_version(self) -> tuple:
        """The fields that change exactly when the aggregate state changes."""
        return (self.max_position, self.max_event_ts_ms, self.window_end_minute, self.applied, self.repairs)


@dataclass(frozen=True)
class AggregateSnapshot:
    """Every aggregate key's content, from Redis or from a recompute.

    window_end_minute is the epoch minute the engagement_10m window ends at (inclusive);
    the window is the ROLLING_WINDOW_MINUTES minutes ending there, and minute_buckets
    holds exactly those buckets.
    """

    counts: Mapping[str, float]
    window_10m: Mapping[str, float]
    avg_pct: Mapping[str, float]
    pct_sum: Mapping[str, float]
    pct_count: Mapping[str, float]
    minute_buckets: Mapping[int, Mapping[str, float]]
    devices: Mapping[str, Mapping[str, float]]
    device_set: frozenset[str]
    rows: Mapping[int, RowContribution]
    max_event_ts_ms: int | None
    window_end_minute: int | None
    watermark: Watermark | None = None
