"""Reconciliation logic without services: classifying rows by the positions each sink holds,
building the expected aggregates, remembering disagreements across runs."""
from __future__ import annotations

import dataclasses
import json
import struct

import pytest

from cdc_platform.aggregates import Row, RowContribution, diff, recompute
from cdc_platform.aggregates.reconciliation import (REDIS_AHEAD, REDIS_BEHIND, SETTLED, UNORDERED, Disagreement,
                                                    RedisRow, classify, decode_pending, drift_examples,
                                                    encode_pending, expected_snapshot, matches, plan, row_from_fence)

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000
NOW = 1_800_000_000_000
SETTLE = 300_000
CONTENT_A = "0b8f9c4e-5a3d-4f7e-9a51-3f1c2d4e5a6b"
CONTENT_B = "7d2e1f0a-9b8c-4d6e-8f7a-1b2c3d4e5f60"


def float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def row(row_id, position, content=CONTENT_A, minute=0, device="mobile", pct=0.3) -> Row:
    return Row(row_id, content, T0 + minute * 60_000 + 1_234, device, pct, position=position)


def stored_in_cassandra(r: Row) -> Row:
    """The row as Cassandra returns it: pct as a 32-bit float."""
    return dataclasses.replace(r, engagement_pct=None if r.engagement_pct is None else float32(r.engagement_pct))


def fence(r: Row) -> RedisRow:
    """Redis's fence after applying r (exact 64-bit pct)."""
    snapshot = recompute([r])
    return RedisRow(r.position, snapshot.rows[r.id])


def redis_state(rows: list[Row], deleted: dict[int, int] | None = None):
    """A Redis snapshot holding `rows`, and its fences (deleted ones as id -> position)."""
    snapshot = recompute(rows, window_end_ms=T0 + 9 * 60_000)
    fences = {row_id: RedisRow(c.position, c) for row_id, c in snapshot.rows.items()}
    fences.update({row_id: RedisRow(pos) for row_id, pos in (deleted or {}).items()})
    return snapshot, fences


@pytest.mark.parametrize("cassandra_pos, redis, expected", [
    (10, RedisRow(10, RowContribution(CONTENT_A, "mobile", 0.3, 1)), SETTLED),
    (10, RedisRow(10), SETTLED),                                         # same position; values judged later
    (None, None, SETTLED),                                               # deleted on both, or never existed
    (None, RedisRow(12), SETTLED),                                       # tombstone and deleted fence
    (10, None, REDIS_BEHIND),
    (10, RedisRow(7, RowContribution(CONTENT_A, "mobile", 0.3, 1)), REDIS_BEHIND),
    (10, RedisRow(7), REDIS_BEHIND),
    (10, RedisRow(12, RowContribution(CONTENT_A, "mobile", 0.3, 1)), REDIS_AHEAD),
    (10, RedisRow(12), REDIS_AHEAD),                                     # Redis applied a delete Cassandra has not
    (None, RedisRow(12, RowContribution(CONTENT_A, "mobile", 0.3, 1)), UNORDERED),
])
def test_classify_by_positions(cassandra_pos, redis, expected):
    cassandra_row = None if cassandra_pos is None else row(1, cassandra_pos)
    assert classify(cassandra_row, redis) == expected


def test_fence_matches_cassandra_at_32_bit_precision():
    exact = row(1, 10, pct=1 / 3)
    stored = stored_in_cassandra(exact)
    assert stored.engagement_pct != exact.engagement_pct
    assert matches(stored, fence(exact).contribution)
    assert matches(dataclasses.replace(stored, content_id=CONTENT_A.upper()), fence(exact).contribution)
    assert not matches(stored, fence(row(1, 10, pct=0.34)).contribution)
    assert not matches(stored, fence(row(1, 10, pct=None)).contribution)
    assert not matches(stored_in_cassandra(row(1, 10, pct=None)), fence(row(1, 10, pct=0.0)).contribution)
    assert not matches(stored, fence(row(1, 10, minute=1)).contribution)
    assert not matches(stored, fence(row(1, 10, device="tv")).contribution)
    assert not matches(stored, fence(row(1, 10, content=CONTENT_B)).contribution)
    assert not matches(stored, RowContribution(CONTENT_A, "mobile", 1e300, 0))


def test_row_from_fence_recomputes_to_the_same_contribution():
    c = RowContribution(CONTENT_A, "desktop", 0.7, 28_333_333, position=99)
    again = recompute([row_from_fence(5, c)]).rows[5]
    assert again == c and again.position == 99
    assert recompute([row_from_fence(6, RowContribution(None, "tv", None, None))]).rows[6].minute is None


def test_consistent_sinks_are_settled_with_zero_drift_despite_32_bit_pcts():
    truth = [row(1, 10, pct=1 / 3), row(2, 11, content=CONTENT_B, device="tablet", pct=0.95),
             row(3, 12, minute=5, device=None, pct=None), row(4, 13, content=None, pct=0.05),
             row(5, 14, minute=-30, pct=0.1)]  # outside the 10-minute window
    snapshot, fences = redis_state(truth, deleted={6: 15})
    cassandra = {r.id: stored_in_cassandra(r) for r in truth}
    p = plan(cassandra, fences, now_ms=NOW)
    assert p.settled == 5 and not p.mismatched and not p.in_flight and not p.stuck
    drift = diff(expected_snapshot(p, snapshot.max_event_ts_ms), snapshot, tolerance=1e-12)
    assert drift.is_zero, drift.summary()


def test_settled_row_whose_fence_disagrees_expects_cassandra():
    snapshot, fences = redis_state([row(1, 10, pct=0.2), row(2, 11)])
    cassandra = {1: stored_in_cassandra(row(1, 10, pct=0.8)), 2: stored_in_cassandra(row(2, 11))}
    p = plan(cassandra, fences, now_ms=NOW)
    assert p.mismatched == (1,)
    assert p.rows[1] is cassandra[1]
    drift = diff(expected_snapshot(p, snapshot.max_event_ts_ms), snapshot, tolerance=1e-6)
    assert drift["rows"].mismatched == (("1/engagement_pct", float32(0.8), 0.2),)
    assert drift["counts"].is_zero and not drift["pct_sum"].is_zero


def test_same_position_deleted_in_redis_but_live_in_cassandra_is_drift():
    snapshot, fences = redis_state([], deleted={1: 10})
    p = plan({1: row(1, 10)}, fences, now_ms=NOW)
    assert p.mismatched == (1,) and 1 in p.rows
    assert diff(expected_snapshot(p, snapshot.max_event_ts_ms), snapshot)["counts"].missing == (CONTENT_A,)


def test_rows_in_flight_expect_what_redis_holds():
    redis_rows = [row(1, 10), row(2, 20, pct=0.9), row(3, 30), row(4, 40, device="tv"), row(6, 60)]
    snapshot, fences = redis_state(redis_rows, deleted={5: 55})
    cassandra = {
        1: row(1, 10),                                   # settled
        2: row(2, 25, pct=0.1),                          # Cassandra newer: Redis behind
        # 3: deleted in Cassandra, or not written yet      -> unordered
        4: row(4, 35, device="mobile"),                  # Redis newer: Redis ahead
        5: row(5, 50),                                   # Redis deleted it later: ahead
        7: row(7, 70),                                   # Redis has no fence yet: behind
        # 6: absent from Cassandra, live in Redis          -> unordered
    }
    p = plan({k: stored_in_cassandra(v) for k, v in cassandra.items()}, fences, now_ms=NOW)
    assert p.settled == 1
    assert p.in_flight_by_kind() == {REDIS_BEHIND: 2, REDIS_AHEAD: 2, UNORDERED: 2}
    assert p.in_flight[2] == Disagreement(REDIS_BEHIND, 25, 20, NOW)
    assert p.in_flight[5] == Disagreement(REDIS_AHEAD, 50, 55, NOW)
    assert p.in_flight[7] == Disagreement(REDIS_BEHIND, 70, None, NOW)
    assert p.in_flight[3] == Disagreement(UNORDERED, None, 30, NOW)
    assert not p.stuck and sorted(p.rows) == [1, 2, 3, 4, 6]
    drift = diff(expected_snapshot(p, snapshot.max_event_ts_ms), snapshot, tolerance=1e-12)
    assert drift.is_zero, drift.summary()


def test_injected_drift_is_found_among_rows_in_flight():
    snapshot, fences = redis_state([row(1, 10), row(2, 20, content=CONTENT_B), row(3, 30, content=CONTENT_B)])
    p = plan({1: row(1, 10), 2: row(2, 25, content=CONTENT_B)}, fences, now_ms=NOW)
    expected = expected_snapshot(p, snapshot.max_event_ts_ms)
    corrupted = dataclasses.replace(snapshot, counts={CONTENT_B: 5, "ghost": 1})
    drift = diff(expected, corrupted)
    assert drift["counts"].missing == (CONTENT_A,)
    assert drift["counts"].extra == ("ghost",)
    assert drift["counts"].mismatched == ((CONTENT_B, 2.0, 5),)
    assert drift["counts"].max_abs_error == 3
    assert drift.total == 3


def test_disagreement_not_moving_for_the_settle_time_is_stuck():
    snapshot, fences = redis_state([row(3, 30), row(4, 40)], deleted={5: 55})
    cassandra = {1: row(1, 10), 2: row(2, 20, pct=0.6), 4: row(4, 35), 5: row(5, 50)}
    fences[2] = fence(row(2, 15, pct=0.2))
    first = plan(cassandra, fences, now_ms=NOW, settle_ms=SETTLE)
    assert not first.stuck and len(first.in_flight) == 5

    later = plan(cassandra, fences, now_ms=NOW + SETTLE, settle_ms=SETTLE, previous=first.pending)
    assert set(later.stuck) == {1, 2, 3}
    assert later.stuck_by_kind() == {REDIS_BEHIND: 2, REDIS_AHEAD: 0, UNORDERED: 1}
    assert later.stuck[1].since_ms == NOW
    # Redis ahead is never stuck: Cassandra is the one behind, and Redis would be set back.
    assert set(later.in_flight) == {4, 5}
    # Stuck rows expect Cassandra: row 1 and 2 as Cassandra holds them, row 3 gone.
    assert later.rows[1] is cassandra[1] and later.rows[2] is cassandra[2] and 3 not in later.rows

    just_before = plan(cassandra, fences, now_ms=NOW + SETTLE - 1, settle_ms=SETTLE, previous=first.pending)
    assert not just_before.stuck


def test_disagreement_that_moved_restarts_its_settle_time():
    _, fences = redis_state([row(1, 10)])
    previous = {1: Disagreement(REDIS_BEHIND, 12, 10, NOW - 10 * SETTLE)}
    p = plan({1: row(1, 14)}, fences, now_ms=NOW, settle_ms=SETTLE, previous=previous)
    assert p.in_flight[1].since_ms == NOW and not p.stuck
    kept = plan({1: row(1, 12)}, fences, now_ms=NOW, settle_ms=SETTLE, previous=previous)
    assert set(kept.stuck) == {1} and kept.stuck[1].since_ms == NOW - 10 * SETTLE


def test_settle_zero_trusts_cassandra_at_once():
    _, fences = redis_state([row(2, 20)])
    p = plan({1: row(1, 10)}, fences, now_ms=NOW, settle_ms=0)
    assert set(p.stuck) == {1, 2} and not p.in_flight and sorted(p.rows) == [1]


def test_after_redis_lost_its_data_rows_it_is_behind_on_are_stuck_in_the_first_run():
    # A flush: Redis holds only what the stream applied since (row 3), Cassandra everything.
    snapshot, fences = redis_state([row(3, 30), row(4, 45)])
    cassandra = {1: row(1, 10), 2: row(2, 20), 3: row(3, 30), 4: row(4, 40)}
    unaware = plan(cassandra, fences, now_ms=NOW, settle_ms=SETTLE)
    assert not unaware.stuck and unaware.in_flight_by_kind()[REDIS_BEHIND] == 2

    p = plan(cassandra, fences, now_ms=NOW, settle_ms=SETTLE, redis_lost=True)
    assert set(p.stuck) == {1, 2} and p.rows[1] is cassandra[1]
    # What Redis is ahead on is still on its way to Cassandra: never set back.
    assert set(p.in_flight) == {4}
    assert not diff(expected_snapshot(p, snapshot.max_event_ts_ms), snapshot).is_zero


def test_pending_round_trips_and_drops_unreadable_entries():
    pending = {1: Disagreement(REDIS_BEHIND, 10**16 + 3, None, NOW),
               22: Disagreement(UNORDERED, None, 2**63 - 1, NOW - 5)}
    raw = {k.encode(): v.encode() for k, v in encode_pending(pending).items()}
    raw.update({b"7": b"weird|1|2|3", b"8": b"redis_ahead|x||1", "x": "redis_behind|1||1"})
    assert decode_pending(raw) == pending


def test_report_parts_are_json_serialisable():
    snapshot, fences = redis_state([row(1, 10)])
    p = plan({1: row(1, 10, pct=0.9)}, fences, now_ms=NOW)
    drift = diff(expected_snapshot(p, snapshot.max_event_ts_ms), snapshot)
    report = {"drift_before": drift.summary(), "examples": drift_examples(drift),
              "in_flight": p.in_flight_by_kind()}
    assert json.loads(json.dumps(report)) == report
    assert set(drift_examples(drift)) == {n for n, a in drift.aggregates.items() if not a.is_zero}
