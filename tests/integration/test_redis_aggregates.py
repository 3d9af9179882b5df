"""Redis aggregates against the real Redis: fenced apply converges to the recompute under
duplicates, replays and reordering; diff measures injected drift; repair fixes it.

Runs in its own Redis database, flushed per test; the stream's database is never touched.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import sys
import types
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_platform import names, semantics
from cdc_platform.aggregates import (Change, RepairConflict, Row, apply_changes, diff, read_snapshot,
                                     read_watermark, recompute, repair)
from cdc_platform.aggregates.store import minute_key, row_key
from tests.spark_packages import ship_packages

pytestmark = pytest.mark.integration

TEST_DB = 9
MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE
# Around 10**16: above 2**53 (not exact as a double) and crossing a decimal-length boundary.
POSITION_BASE = 10**16 - 12


def _url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="module")
def test_redis_url(stack_env) -> str:
    return _url_with_db(stack_env["REDIS_URL"], TEST_DB)


@pytest.fixture(scope="module")
def db(test_redis_url):
    client = redis.Redis.from_url(test_redis_url, decode_responses=True)
    assert client.connection_pool.connection_kwargs["db"] == TEST_DB
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def r(db):
    db.flushdb()
    return db


def truth(latest: dict[int, Change]) -> list[Row]:
    return [Row(c.id, c.content_id, c.event_ts_ms, c.device, c.engagement_pct, position=c.position)
            for c in latest.values()]


def assert_converged(client, latest: dict[int, Change], clock_ms: int | None):
    snapshot = read_snapshot(client)
    assert snapshot.watermark.max_event_ts_ms == clock_ms
    drift = diff(recompute(truth(latest), window_end_ms=clock_ms), snapshot, tolerance=1e-9)
    assert drift.is_zero, drift.summary()


pcts = st.one_of(
    st.none(),
    st.sampled_from([0.0, semantics.VERY_LOW_PCT, 0.5, semantics.VERY_HIGH_PCT, semantics.PCT_CAP]),
    st.floats(min_value=0.0, max_value=semantics.PCT_CAP),
)
steps = st.tuples(
    st.integers(1, 4),                                       # row id
    st.sampled_from(["write", "write", "delete"]),
    st.sampled_from(["c1", "c2", "c3", None]),               # content id
    st.integers(0, 25 * MINUTE),                             # event time: spans more than the window
    st.sampled_from(semantics.DEVICES),
    pcts,
)


@st.composite
def deliveries(draw):
    """A source history, then its at-least-once delivery: duplicated, replayed, shuffled, batched."""
    history: list[Change] = []
    latest: dict[int, Change] = {}
    for i, (row_id, kind, content, offset, device, pct) in enumerate(draw(st.lists(steps, min_size=1, max_size=25))):
        position = POSITION_BASE + i
        if kind == "delete":
            if row_id not in latest:
                continue
            before = latest.pop(row_id)
            history.append(Change(row_id, "d", position, before.content_id, before.event_ts_ms, before.device,
                                  before.engagement_pct))
        else:
            op = "u" if row_id in latest else draw(st.sampled_from(["c", "r"]))
            latest[row_id] = Change(row_id, op, position, content, T0 + offset, device, pct)
            history.append(latest[row_id])
    replays = draw(st.lists(st.sampled_from(history), max_size=len(history))) if history else []
    delivered = draw(st.permutations(history + replays))
    return history, latest, delivered, draw(st.integers(1, 8))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=deliveries())
def test_any_delivery_order_converges_to_the_recompute(db, case):
    history, latest, delivered, batch_size = case
    db.flushdb()

    stats = apply_changes(db, delivered, batch_size=batch_size)

    assert stats.applied + stats.skipped_stale == len(delivered)
    assert stats.skipped_stale >= len(delivered) - len(history)
    clock = max((c.event_ts_ms for c in history if c.op != "d" and c.event_ts_ms is not None), default=None)
    assert_converged(db, latest, clock)

    # A re-run micro-batch changes nothing.
    again = apply_changes(db, delivered, batch_size=batch_size)
    assert (again.applied, again.skipped_stale) == (0, len(delivered))
    assert_converged(db, latest, clock)


def test_replayed_insert_after_delete_stays_deleted(r):
    insert = Change(1, "c", 100, "c1", T0, "mobile", 0.5)
    delete = Change(1, "d", 101, "c1", T0, "mobile", 0.5)
    assert apply_changes(r, [insert, delete]).applied == 2
    assert apply_changes(r, [insert, Change(1, "u", 100, "c2", T0, "tv", 0.9)]).skipped_stale == 2

    assert r.hget(row_key(1), "pos") == "101" and r.hget(row_key(1), "deleted") == "1"
    assert r.exists(names.REDIS_COUNTS, names.REDIS_AVG_PCT, names.REDIS_10M) == 0
    assert r.scard(names.REDIS_DEVICES) == 0
    assert_converged(r, {}, T0)


def test_a_deleted_rows_fence_expires_after_the_replay_horizon_and_a_live_one_never(r):
    apply_changes(r, [Change(1, "c", 100, "c1", T0, "mobile", 0.5), Change(2, "c", 102, "c1", T0, "tv", 0.5),
                      Change(1, "d", 101, "c1", T0, "mobile", 0.5)])
    ttl = r.pttl(row_key(1))
    assert semantics.CHANGE_REPLAY_HORIZON_MS < ttl <= semantics.DELETED_ROW_FENCE_TTL_MS
    assert r.hgetall(row_key(1)).keys() == {"pos", "deleted", "at"}
    assert r.pttl(row_key(2)) == -1

    # A row that comes back (a re-snapshot after its delete) keeps its fence for good again.
    apply_changes(r, [Change(1, "r", 103, "c2", T0, "tv", 0.2)])
    assert r.pttl(row_key(1)) == -1
    assert_converged(r, {1: Change(1, "r", 103, "c2", T0, "tv", 0.2), 2: Change(2, "c", 102, "c1", T0, "tv", 0.5)},
                     T0)


def test_repair_writes_deleted_fences_that_expire_and_live_ones_that_do_not(r):
    apply_changes(r, [Change(1, "c", 100, "c1", T0, "mobile", 0.5), Change(2, "c", 101, "c1", T0, "tv", 0.5),
                      Change(2, "d", 102, "c1", T0, "tv", 0.5)])
    live = Change(2, "r", 103, "c1", T0, "tv", 0.5)
    repair(r, recompute(truth({2: live}), window_end_ms=T0))
    assert 0 < r.pttl(row_key(1)) <= semantics.DELETED_ROW_FENCE_TTL_MS
    assert r.hget(row_key(1), "pos") == "100" and r.hget(row_key(1), "deleted") == "1"
    assert r.pttl(row_key(2)) == -1
    assert_converged(r, {2: live}, T0)


def test_watermark_tracks_clock_positions_and_applied_changes(r):
    apply_changes(r, [Change(1, "c", 7, "c1", T0 + 5 * MINUTE, "tv", None),
                      Change(2, "c", 5, "c1", T0, "tv", None),
                      Change(2, "c", 5, "c1", T0, "tv", None)])
    wm = read_watermark(r)
    assert (wm.max_position, wm.max_event_ts_ms, wm.window_end_minute, wm.applied) == (
        7, T0 + 5 * MINUTE, semantics.minute_bucket(T0 + 5 * MINUTE), 2)


SCENARIO = [
    Change(1, "c", 100, "c1", T0 + 1 * MINUTE, "mobile", 0.05),
    Change(2, "c", 101, "c1", T0 + 12 * MINUTE, "mobile", 0.95),
    Change(3, "c", 102, "c2", T0 + 13 * MINUTE, "desktop", 0.5),
    Change(4, "c", 103, "c2", T0 + 14 * MINUTE, "tablet", 0.92),
    Change(5, "c", 104, "c3", T0 + 14 * MINUTE, "tablet", None),
    Change(6, "c", 105, "c3", T0 + 2 * MINUTE, "tv", 0.3),
    Change(6, "d", 106, "c3", T0 + 2 * MINUTE, "tv", 0.3),
]


def latest_of(changes) -> dict[int, Change]:
    latest: dict[int, Change] = {}
    for c in sorted(changes, key=lambda c: c.position):
        if c.op == "d":
            latest.pop(c.id, None)
        else:
            latest[c.id] = c
    return latest


def test_repair_fixes_injected_drift_and_later_deltas_stay_correct(r):
    apply_changes(r, SCENARIO)
    clock = read_watermark(r).max_event_ts_ms
    expected = recompute(truth(latest_of(SCENARIO)), window_end_ms=clock)
    assert diff(expected, read_snapshot(r)).is_zero

    stray_minute = semantics.minute_bucket(T0) - 100
    r.zrem(names.REDIS_COUNTS, "c1")                                      # member deleted (count 2)
    r.zadd(names.REDIS_10M, {"c2": 5})                                    # wrong count (2)
    r.hset(f"{names.REDIS_DEVICE_PREFIX}mobile", "count", 5)              # wrong count (2)
    r.zadd(minute_key(stray_minute), {"c9": 1})                           # extra key
    r.hset(row_key(2), "content", "c3")                                   # corrupted fence

    drift = diff(expected, read_snapshot(r))
    assert (drift["counts"].missing, drift["counts"].max_abs_error) == (("c1",), 2)
    assert (drift["window_10m"].mismatched, drift["window_10m"].max_abs_error) == ((("c2", 2, 5),), 3)
    assert drift["devices"].mismatched == (("mobile/count", 2, 5),)
    assert drift["minute_buckets"].extra == (f"{stray_minute}/c9",)
    assert drift["rows"].mismatched == (("2/content_id", "c1", "c3"),)
    assert drift.total == 5

    result = repair(r, expected, if_watermark=read_watermark(r))
    assert result.fences_rewritten == 1
    assert diff(expected, read_snapshot(r)).is_zero
    assert not r.exists(minute_key(stray_minute))

    later = [
        Change(2, "u", 200, "c2", T0 + 15 * MINUTE, "desktop", 0.4),   # undoes the repaired fence
        Change(1, "d", 201, "c1", T0 + 1 * MINUTE, "mobile", 0.05),
        Change(3, "u", 101, "c9", T0, "tv", 0.1),                      # stale replay
    ]
    stats = apply_changes(r, later)
    assert (stats.applied, stats.skipped_stale) == (2, 1)
    assert_converged(r, latest_of(SCENARIO + later), T0 + 15 * MINUTE)


def test_repair_into_empty_redis_rebuilds_fences_from_positions(r):
    latest = latest_of(SCENARIO)
    clock = max(c.event_ts_ms for c in SCENARIO)
    repair(r, recompute(truth(latest), window_end_ms=clock))
    assert_converged(r, latest, clock)

    # The whole history again: everything up to the fences is a no-op (row 6 has no fence).
    stats = apply_changes(r, SCENARIO)
    assert stats.applied == 2  # row 6's insert and delete
    assert_converged(r, latest, clock)


def test_repair_never_sets_a_fence_back_that_the_stream_moved_on_meanwhile(r, monkeypatch):
    from cdc_platform.aggregates import store

    expected = recompute(truth({1: Change(1, "c", 100, "c1", T0, "tv", 0.5)}), window_end_ms=T0)
    newer = Change(1, "u", 200, "c2", T0, "mobile", 0.1)
    write = store._write_fences

    def stream_applies_first(client, fences):
        apply_changes(client, [newer])  # lands between the repair's read and its fence writes
        return write(client, fences)

    monkeypatch.setattr(store, "_write_fences", stream_applies_first)
    with pytest.raises(RepairConflict):
        repair(r, expected)
    assert r.hget(row_key(1), "pos") == "200" and r.hget(row_key(1), "content") == "c2"
    assert_converged(r, {1: newer}, T0)


def test_repair_refuses_when_redis_moved_past_the_watermark(r):
    apply_changes(r, SCENARIO)
    watermark = read_watermark(r)
    stale_expected = recompute(truth(latest_of(SCENARIO)), window_end_ms=watermark.max_event_ts_ms)
    apply_changes(r, [Change(7, "c", 300, "c1", T0 + 14 * MINUTE, "tv", 0.5)])

    with pytest.raises(RepairConflict, match="recompute the expected state"):
        repair(r, stale_expected, if_watermark=watermark)
    assert read_snapshot(r).counts["c1"] == 3


def test_one_script_call_applies_a_rows_whole_history_in_order(r):
    changes = [
        Change(1, "c", 100, "c1", T0 + 1 * MINUTE, "mobile", 0.05),
        Change(2, "c", 101, "c2", T0 + 2 * MINUTE, "tv", 0.5),
        Change(1, "u", 102, "c2", T0 + 3 * MINUTE, "tablet", 0.95),   # undoes the insert in the same call
        Change(3, "r", 103, "c1", T0 + 12 * MINUTE, "tv", None),       # moves the window mid-call
        Change(1, "d", 104, "c2", T0 + 3 * MINUTE, "tablet", 0.95),
        Change(1, "c", 100, "c1", T0 + 1 * MINUTE, "mobile", 0.05),   # stale replay after the delete
        Change(2, "u", 105, "c1", T0 + 11 * MINUTE, "desktop", 0.3),
    ]
    before_ms = int(r.time()[0]) * 1000
    stats = apply_changes(r, changes, batch_size=len(changes))
    after_ms = (int(r.time()[0]) + 1) * 1000

    assert (stats.applied, stats.skipped_stale) == (6, 1)
    latest = latest_of(changes)
    assert set(latest) == {2, 3}
    assert_converged(r, latest, T0 + 12 * MINUTE)
    assert read_watermark(r).applied == 6 and read_watermark(r).max_position == 105
    assert r.hget(row_key(1), "pos") == "104" and r.hget(row_key(1), "deleted") == "1"
    applied_at = {row_id: int(r.hget(row_key(row_id), "at")) for row_id in (1, 2, 3)}
    assert all(before_ms <= at <= after_ms for at in applied_at.values()), applied_at

    # `at` is not part of what repair compares: a clean state rewrites no fence, nor its `at`.
    result = repair(r, recompute(truth(latest), window_end_ms=T0 + 12 * MINUTE), if_watermark=read_watermark(r))
    assert result.fences_rewritten == 0
    assert {row_id: int(r.hget(row_key(row_id), "at")) for row_id in (1, 2, 3)} == applied_at
    assert_converged(r, latest, T0 + 12 * MINUTE)

    # A replay split over several calls and round trips is a no-op that leaves `at` alone.
    again = apply_changes(r, changes, batch_size=1)
    assert (again.applied, again.skipped_stale) == (0, len(changes))
    assert {row_id: int(r.hget(row_key(row_id), "at")) for row_id in (1, 2, 3)} == applied_at


def test_a_script_missing_from_the_server_cache_is_loaded_and_the_batch_retried(r, monkeypatch):
    from cdc_platform.aggregates import store

    # A variant of the script no server has seen, as after a restart flushed the script cache.
    script = store.APPLY_SCRIPT + f"\n-- {os.getpid()} {dt.datetime.now().isoformat()}\n"
    monkeypatch.setattr(store, "APPLY_SCRIPT", script)
    monkeypatch.setattr(store, "APPLY_SHA", hashlib.sha1(script.encode()).hexdigest())
    assert r.script_exists(store.APPLY_SHA) == [False]

    stats = apply_changes(r, SCENARIO, batch_size=2)
    assert (stats.applied, stats.skipped_stale) == (len(SCENARIO), 0)
    assert r.script_exists(store.APPLY_SHA) == [True]
    assert_converged(r, latest_of(SCENARIO), max(c.event_ts_ms for c in SCENARIO))


@pytest.fixture(scope="module")
def spark_with_code(request, tmp_path_factory):
    """The shared SparkSession, its Python workers running this interpreter (which has redis)
    with this repo's packages shipped to them."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = request.getfixturevalue("spark")
    # A session started earlier by another module may have picked the PATH's python3.
    spark.sparkContext.pythonExec = os.environ["PYSPARK_PYTHON"]
    ship_packages(spark.sparkContext, tmp_path_factory.mktemp("pyfiles"))
    return spark


def test_write_batch_applies_a_micro_batch_and_a_rerun_is_a_no_op(spark_with_code, r, test_redis_url):
    from cdc_stream import change_log, schemas
    from cdc_stream.redis_sink import write_batch

    def row(c: Change | None = None, **override):
        values = dict(id=c.id, op=c.op, position=c.position, source_ts_ms=T0, content_id=c.content_id,
                      user_id="u", event_type="play",
                      event_ts=dt.datetime.fromtimestamp(c.event_ts_ms / 1000, tz=dt.timezone.utc),
                      duration_ms=1, device=c.device, raw_payload="{}", length_seconds=1,
                      engagement_pct=c.engagement_pct)
        values.update(override)
        return tuple(values[f.name] for f in schemas.CHANGE.fields)

    changes = SCENARIO + [SCENARIO[1]]
    bad = row(SCENARIO[0], id=99, position=None)
    df = change_log.change_records(
        spark_with_code.createDataFrame([row(c) for c in changes] + [bad], schemas.CHANGE).repartition(3), "changes")
    settings_ = types.SimpleNamespace(redis_url=test_redis_url)

    stats = write_batch(df, 41, settings_)
    # Row 6's insert is skipped too when its delete's partition runs first.
    assert stats.applied + stats.skipped_stale == len(changes) and stats.skipped_stale >= 1
    assert stats.rejected == 1
    assert read_watermark(r).batch_id == 41
    assert_converged(r, latest_of(SCENARIO), max(c.event_ts_ms for c in SCENARIO))

    rerun = write_batch(df, 41, settings_)
    assert (rerun.applied, rerun.skipped_stale) == (0, len(changes))
    assert_converged(r, latest_of(SCENARIO), max(c.event_ts_ms for c in SCENARIO))


def test_a_deletes_before_image_never_moves_the_window_clock(r):
    # A far-future row was quarantined on insert; its delete still reaches the sinks.
    apply_changes(r, [Change(1, "c", 5, "c1", T0, "tv", 0.5),
                      Change(9, "d", 6, "c1", T0 + 30 * 24 * 60 * MINUTE, "tv", None)])
    wm = read_watermark(r)
    assert wm.max_event_ts_ms == T0
    assert r.zscore(names.REDIS_10M, "c1") == 1
