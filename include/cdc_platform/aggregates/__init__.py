"""Real-time engagement aggregates in Redis, kept exactly-once by per-row position fences.

Writing (the stream):
    apply_changes(client, changes) -> ApplyStats   fenced, order- and duplicate-insensitive
    commit_batch(client, batch_id)                 records a finished micro-batch in the watermark
Checking and fixing (reconciliation):
    read_watermark(client) -> Watermark
    recompute(rows, window_end_ms=...) -> AggregateSnapshot   pure, from the current rows
    read_snapshot(client) -> AggregateSnapshot                consistent read of Redis
    diff(expected, actual, tolerance) -> Drift                pure
    repair(client, expected, if_watermark=...)                one MULTI/EXEC, fences included

engagement_10m uses event time: its "now" is the largest event_ts of any insert, update or
snapshot change delivered (applied or stale; a delete's before-image never moves it, since
deletes are not validated), kept in the watermark as max_event_ts_ms. That
clock only moves forward and does not depend on arrival order, so replays and reordering
converge. The window is that clock's epoch minute and the ROLLING_WINDOW_MINUTES - 1 before it;
per-minute buckets exist only inside it. To compare with Redis, recompute with
window_end_ms=read_watermark(client).max_event_ts_ms.

Rows with a null content_id count towards device insights only; a null device towards the
per-content aggregates only. Device shares are over the device's rows that have a pct.
"""
from .drift import AggregateDrift, Drift, diff
from .model import (AggregateSnapshot, ApplyStats, Change, Row, RowContribution, Watermark, pct_band,
                    window_start_minute)
from .recompute import recompute
from .store import (RepairConflict, RepairResult, SnapshotUnstable, apply_changes, commit_batch,
                    establish_state_marker, mark_state_intact, read_snapshot, read_watermark, repair,
                    state_marker_present)

__all__ = [
    "AggregateDrift", "AggregateSnapshot", "ApplyStats", "Change", "Drift", "RepairConflict", "RepairResult",
    "Row", "RowContribution", "SnapshotUnstable", "Watermark", "apply_changes", "commit_batch", "diff",
    "establish_state_marker", "mark_state_intact", "pct_band", "read_snapshot", "read_watermark", "recompute", "repair", "state_marker_present",
    "window_start_minute",
]
