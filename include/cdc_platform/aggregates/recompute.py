"""From-scratch computation of every Redis aggregate over the current rows (pure)."""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from cdc_platform import semantics

from .model import AggregateSnapshot, Row, RowContribution, pct_band, window_start_minute


def contribution_of(row: Row) -> RowContribution:
    """The part of a current row the aggregates depend on.

    An empty or null content_id adds to device insights only; an empty or null device
    adds to per-content aggregates only; a null event_ts is outside every window.
    """
    ts = row.event_ts_ms
    return RowContribution(
        content_id=row.content_id or None,
        device=row.device or None,
        engagement_pct=None if row.engagement_pct is None else float(row.engagement_pct),
        minute=None if ts is None else semantics.minute_bucket(ts),
        position=getattr(row, "position", None),
    )


def recompute(rows: Iterable[Row], *, window_end_ms: int | None = None) -> AggregateSnapshot:
    """Aggregates over `rows`, the latest version of every live row.

    rows may be any objects with id, content_id, event_ts_ms, device, engagement_pct
    (and optionally position). window_end_ms is the event-time clock the 10-minute
    window ends at; to compare with Redis pass its watermark's max_event_ts_ms, which
    also counts deleted and superseded versions. Left out, it is the largest event_ts
    among rows.
    """
    contributions: dict[int, RowContribution] = {}
    latest_ts: int | None = None
    for row in rows:
        if row.id in contributions:
            raise ValueError(f"recompute: row id {row.id} given twice; pass only the latest version of each row")
        contributions[row.id] = contribution_of(row)
        if row.event_ts_ms is not None and (latest_ts is None or row.event_ts_ms > latest_ts):
            latest_ts = row.event_ts_ms

    if window_end_ms is None:
        window_end_ms = latest_ts
    window_end = None if window_end_ms is None else semantics.minute_bucket(window_end_ms)
    window_start = None if window_end is None else window_start_minute(window_end)

    counts: dict[str, float] = defaultdict(float)
    window_10m: dict[str, float] = defaultdict(float)
    buckets: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    pct_sum: dict[str, float] = defaultdict(float)
    pct_count: dict[str, float] = defaultdict(float)
    devices: dict[str, dict[str, float]] = {}

    for c in contributions.values():
        pct = c.engagement_pct
        if c.content_id is not None:
            counts[c.content_id] += 1
            if c.minute is not None and window_start is not None and window_start <= c.minute <= window_end:
                window_10m[c.content_id] += 1
                buckets[c.minute][c.content_id] += 1
            if pct is not None:
                pct_sum[c.content_id] += pct
                pct_count[c.content_id] += 1
        if c.device is not None:
            d = devices.setdefault(c.device, dict.fromkeys(("count", "pct_sum", "pct_count", "very_low", "very_high"), 0.0))
            d["count"] += 1
            if pct is not None:
                d["pct_sum"] += pct
                d["pct_count"] += 1
                band = pct_band(pct)
                if band == "low":
                    d["very_low"] += 1
                elif band == "high":
                    d["very_high"] += 1

    for d in devices.values():
        if d["pct_count"] > 0:
            d["mean_pct"] = d["pct_sum"] / d["pct_count"]
            d["very_low_share"] = d["very_low"] / d["pct_count"]
            d["very_high_share"] = d["very_high"] / d["pct_count"]

    return AggregateSnapshot(
        counts=dict(counts),
        window_10m=dict(window_10m),
        avg_pct={content: pct_sum[content] / n for content, n in pct_count.items()},
        pct_sum=dict(pct_sum),
        pct_count=dict(pct_count),
        minute_buckets={minute: dict(members) for minute, members in buckets.items()},
        devices=devices,
        device_set=frozenset(devices),
        rows=contributions,
        max_event_ts_ms=window_end_ms,
        window_end_minute=window_end,
    )
