"""The benchmark's pure logic: percentiles, open-loop schedule, catching up, lag flatness, summaries."""
from __future__ import annotations

import argparse

import pytest

from cdc_local.bench import cli, logic
from cdc_local.bench import load as loadgen


# --- percentiles --------------------------------------------------------------------------

def test_percentiles_interpolate_between_ranks():
    values = list(range(1, 101))  # 1..100
    assert logic.percentile(values, 50) == pytest.approx(50.5)
    assert logic.percentile(values, 99) == pytest.approx(99.01)
    assert logic.percentile(values, 100) == 100
    assert logic.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        logic.percentile([], 50)


def test_distribution_is_over_every_value_unsorted_input():
    d = logic.distribution([3.0, 1.0, 2.0, 10.0])
    assert d == {"count": 4, "mean_s": 4.0, "p50_s": 2.5, "p95_s": 8.95, "p99_s": 9.79, "max_s": 10.0}
    assert logic.distribution([]) == {"count": 0}


def test_windowed_percentile_shows_a_growing_latency():
    points = [(100 + t, 0.1 * t) for t in range(30)]  # latency grows with commit time
    windows = logic.windowed_percentile(points, 10, q=50)
    assert [w for w, _ in windows] == [0.0, 10.0, 20.0]
    assert windows[0][1] < windows[1][1] < windows[2][1]
    assert logic.windowed_percentile([], 10) == []


# --- open-loop schedule -------------------------------------------------------------------

def test_open_loop_schedule_is_fixed_in_time():
    s = logic.OpenLoopSchedule(rate=100, total=1000, start=50.0)
    assert s.due(49.0) == 0
    assert s.due(50.0) == 1            # row 0 is due at the start
    assert s.due(50.995) == 100
    assert s.due(51.0) == 101
    assert s.due(1e9) == 1000          # never more than planned
    assert s.due_at(250) == pytest.approx(52.5)
    assert s.behind(53.0, 250) == pytest.approx(0.5)
    assert s.behind(52.0, 250) == 0.0  # ahead of schedule
    assert s.behind(99.0, 1000) == 0.0  # finished


def test_rate_zero_means_everything_due_at_once():
    s = logic.OpenLoopSchedule(rate=0, total=500, start=10.0)
    assert s.due(0.0) == 500
    assert s.behind(100.0, 3) == 0.0


def test_the_generator_kept_its_rate():
    assert logic.kept_rate(1000, 990, 0.2)
    assert not logic.kept_rate(1000, 900, 0.2)     # too slow
    assert not logic.kept_rate(1000, 1000, 2.5)    # on average, but once far behind


def test_window_count():
    commits = [(1.0, 10), (2.0, 10), (3.0, 5), (4.5, 7)]
    assert logic.window_count(commits, 2.0, 4.0) == 15
    assert logic.window_count(commits, 0, 10) == 32


class FakeWriter:
    def __init__(self):
        self.batches = []

    def write(self, n, result, record_rows=False):
        import time

        committed = time.time()
        self.batches.append(n)
        result.inserts += n
        result.transactions += 1
        result.commits.append((committed, n))
        if record_rows:
            for i in range(n):
                result.row_commit[len(result.row_commit)] = committed
        return committed


def test_open_loop_never_writes_ahead_of_schedule():
    writer = FakeWriter()
    result = loadgen.run_open_loop(writer, rate=2000, total=300, tick_s=0.01, record_rows=True)
    assert result.changes == 300 and len(result.row_commit) == 300
    schedule = logic.OpenLoopSchedule(2000, 300, result.started)
    written = 0
    for committed, n in result.commits:
        written += n
        assert written <= schedule.due(committed)   # a row is written only once it is due
    assert result.seconds >= 299 / 2000
    assert "kept_rate" in result.as_dict()


def test_as_fast_as_possible_uses_full_transactions():
    writer = FakeWriter()
    result = loadgen.run_open_loop(writer, rate=0, total=1250, max_batch=500)
    assert writer.batches == [500, 500, 250]
    assert "kept_rate" not in result.as_dict()


# --- the workload -------------------------------------------------------------------------

def test_workload_mix_needs_live_rows_and_never_repeats_a_row_in_a_batch():
    w = loadgen.Workload(seed=3)
    assert w.split(100) == (100, 0, 0)            # nothing to update or delete yet
    rows = w.inserts(20_000)
    w.inserted(rows, list(range(1, 20_001)))
    inserts, updates, deletes = w.split(10_000)
    assert inserts + updates + deletes == 10_000
    assert 0.07 < updates / 10_000 < 0.13 and 0.02 < deletes / 10_000 < 0.06
    gone = w.take_deletes(50)
    changed = w.updates(200)
    assert len(set(gone)) == 50 and not set(gone) & set(w.live)
    assert len({r[0] for r in changed}) == 200 and not {r[0] for r in changed} & set(gone)
    assert all(isinstance(duration, int) for _, duration, _ in changed)


def test_inserts_only_workload_writes_valid_rows():
    w = loadgen.Workload(seed=4, update_share=0, delete_share=0, bad_share=0)
    w.inserted(w.inserts(10), list(range(10)))
    assert w.split(500) == (500, 0, 0)
    assert all(r[0] is not None and r[4] >= 0 for r in w.inserts(500))


# --- offsets and catching up --------------------------------------------------------------

def test_reached_and_lag():
    ends = {"a": {0: 10, 1: 5}, "b": {0: 3}}
    assert logic.reached({"a": {0: 10, 1: 6}, "b": {0: 3}}, ends)
    assert not logic.reached({"a": {0: 10, 1: 4}, "b": {0: 3}}, ends)
    assert not logic.reached({"a": {0: 10, 1: 5}}, ends)   # a partition never committed
    assert logic.lag({"a": {0: 7, 1: 9}, "b": {0: 3}}, ends) == 3
    assert logic.lag({}, ends) == 18


def test_catch_up_checks_queries_in_pipeline_order():
    committed = {"core": ({"src": {0: 50}}, 105.0), "cassandra": ({"norm": {0: 40}}, 104.0), "rest": None}
    ends_now = {"src": {0: 100}, "norm": {0: 40}}
    reads = []

    def ends_of(offsets):
        reads.append(sorted(offsets))
        return {t: {p: ends_now[t][p] for p in parts} for t, parts in offsets.items()}

    tracker = logic.CatchUp(["core", "cassandra", "rest"], origin=100.0)
    tracker.update(committed.get, ends_of, now=106.0)
    assert tracker.pending() == ["core", "cassandra", "rest"]
    assert reads == [["src"]]                 # the sinks' ends are not read while core is behind

    committed["core"] = ({"src": {0: 100}}, 110.0)
    ends_now["norm"] = {0: 90}                # core wrote the rest of the normalised changes
    tracker.update(committed.get, ends_of, now=111.0)
    assert tracker.done == {"core": 110.0}    # core's commit time, not the time we looked
    assert tracker.ends["cassandra"] == {"norm": {0: 90}}
    assert reads == [["src"], ["norm"]]       # core's ends were read once

    committed["cassandra"] = ({"norm": {0: 90}}, 113.0)
    committed["rest"] = ({"norm": {0: 90}}, 112.5)
    tracker.update(committed.get, ends_of, now=114.0)
    assert tracker.pending() == []
    assert tracker.seconds() == {"core": 10.0, "cassandra": 13.0, "rest": 12.5}


def test_catch_up_takes_the_earliest_commit_that_reached_the_ends():
    tracker = logic.CatchUp(["q"], origin=100.0)
    tracker.update(lambda q: ({"t": {0: 5}}, 120.0), lambda o: {"t": {0: 5}}, now=121.0,
                   reached_at=lambda q, ends: 108.0)   # later batches carried no new data
    assert tracker.seconds() == {"q": 8.0}


def test_catch_up_times_are_clamped_to_the_load():
    tracker = logic.CatchUp(["q"], origin=100.0)
    tracker.update(lambda q: ({"t": {0: 5}}, 90.0), lambda o: {"t": {0: 5}}, now=101.0)
    assert tracker.done == {"q": 100.0}       # its last commit predates the load: nothing to do


# --- capture ------------------------------------------------------------------------------

def test_capture_span_from_the_first_to_the_last_movement():
    samples = [(0.0, 1000), (0.5, 1000), (1.0, 1000), (1.5, 1700), (2.0, 2400), (2.5, 3000), (3.0, 3000),
               (3.5, 3000)]
    assert logic.capture_span(samples) == (1.0, 2.5, 2000)
    assert logic.capture_span([(0.0, 5), (1.0, 5)]) is None
    assert logic.capture_span([(0.0, 5)]) is None


def test_rates_between_interpolated_samples():
    samples = [(0.0, 0), (1.0, 100), (2.0, 300)]
    assert logic.value_at(samples, 1.5) == 200
    assert logic.value_at(samples, -1) == 0 and logic.value_at(samples, 9) == 300
    assert logic.rate_between(samples, 0.5, 1.5) == pytest.approx(150)
    assert logic.rate_between(samples, 1.0, 1.0) is None


def test_messages_per_change_counts_tombstones():
    assert logic.messages_per_change(100, 4, tombstones=True) == pytest.approx(1.04)
    assert logic.messages_per_change(100, 4, tombstones=False) == 1.0
    assert logic.messages_per_change(0, 0, tombstones=True) == 1.0


# --- backlog ------------------------------------------------------------------------------

def test_backlog_ratio_is_slowest_query_over_capture():
    s = logic.backlog_summary(100_000, origin=1000.0, capture_end=1010.0,
                              caught_up_at={"core": 1012.0, "cassandra": 1020.0, "redis": 1016.0, "rest": 1025.0},
                              write_seconds=4.0)
    assert s["capture_changes_per_s"] == 10_000
    assert s["queries"]["cassandra"] == {"seconds": 20.0, "changes_per_s": 5000.0}
    assert s["pipeline_seconds"] == 25.0 and s["pipeline_changes_per_s"] == 4000.0
    assert s["ratio_to_capture"] == 0.4
    assert s["capture_bounded_by_source"] is False


def test_backlog_without_every_query_has_no_headline():
    s = logic.backlog_summary(1000, 0.0, 2.0, {"core": 3.0, "rest": None}, write_seconds=1.9)
    assert s["queries"]["rest"] == {"seconds": None, "changes_per_s": None}
    assert s["pipeline_changes_per_s"] is None and s["ratio_to_capture"] is None
    assert s["capture_bounded_by_source"] is True   # the writer, not Debezium, set the pace


# --- steps --------------------------------------------------------------------------------

def test_flat_lag_holds_growing_lag_does_not():
    assert logic.thirds([1, 2, 3, 4, 5, 6]) == (1.5, 5.5)
    assert logic.thirds([1, 2]) is None
    flat = [900, 1500, 600, 1200, 800, 1400, 700, 1300, 1000]
    assert logic.lag_holds(flat, tolerance=1000) is True
    growing = [0, 2000, 4000, 6000, 8000, 10_000, 12_000, 14_000, 16_000]
    assert logic.lag_holds(growing, tolerance=1000) is False
    slight = [100, 100, 100, 600, 600, 600, 1000, 1000, 1000]
    assert logic.lag_holds(slight, tolerance=1000) is True    # within one step-second
    assert logic.lag_holds([5, 6], tolerance=1000) is None


def test_steps_grow_past_the_list_in_round_numbers():
    assert logic.next_step_rate(5000, 1.5, 50_000) == 7500
    assert logic.next_step_rate(7500, 1.5, 50_000) == 11_200
    assert logic.next_step_rate(40_000, 1.5, 50_000) is None
    assert logic.next_step_rate(5000, 0, 50_000) is None


def test_highest_held_ignores_failed_and_generator_limited_steps():
    steps = [{"rate": 500, "holds": True}, {"rate": 1000, "holds": True}, {"rate": 2000, "holds": False},
             {"rate": 5000, "holds": None}]
    assert logic.highest_held(steps) == 1000
    assert logic.highest_held([{"rate": 500, "holds": False}]) is None


# --- footprint ----------------------------------------------------------------------------

def test_cpu_account_counts_only_the_phase():
    cpu = logic.CpuAccount(started=100.0)
    cpu.observe("kafka", (1, 50.0), 50.0, 30.0)       # older process: from its first snapshot
    cpu.observe("spark", (2, 101.0), 101.0, 2.0)      # started during the phase: all of it
    cpu.observe("kafka", (1, 50.0), 50.0, 34.5)
    cpu.observe("spark", (2, 101.0), 101.0, 9.0)
    cpu.observe("spark", (3, 90.0), 90.0, 5.0)        # seen once: nothing measurable yet
    assert cpu.seconds() == {"kafka": 4.5, "spark": 9.0}


def test_footprint_summary():
    s = logic.footprint_summary({"kafka": 10.0, "spark": 30.0}, {"kafka": [(2**30, 2**30 + 2**20)],
                                                                 "spark": [(2**29, 2**29), (2**30, 2**30)]},
                                [3 * 2**29, 2 * 2**30], wall_s=20.0, cores=2, machine_busy_s=36.0)
    assert s["groups"]["spark"]["cpu_cores"] == 1.5 and s["groups"]["spark"]["cpu_share_pct"] == 75.0
    assert s["groups"]["spark"]["pss_mean_mib"] == 768.0 and s["groups"]["spark"]["pss_max_mib"] == 1024.0
    assert s["groups"]["kafka"]["rss_max_mib"] == 1025.0
    assert s["total_pss_max_mib"] == 2048.0 and s["machine_busy_pct"] == 90.0


# --- targets and the CLI ------------------------------------------------------------------

def test_targets_from_whatever_was_measured():
    phases = {
        "backlog": {"ratio_to_capture": 0.85, "pipeline_changes_per_s": 6200.0, "capture_changes_per_s": 7300.0},
        "steps": {"highest_held_changes_per_s": 5000},
        "freshness": {"sinks": {"cassandra": {"p99_s": 1.4}, "redis": {"error": "no at"}, "rest": {"p99_s": 3.5}}},
        "footprint": {"loads": {"backlog": {"total_pss_max_bytes": 5 * 2**30}, "step": {"total_pss_max_bytes": None}}},
    }
    by_name = {t["target"]: t for t in logic.evaluate_targets(phases)}
    assert by_name["backlog: pipeline / capture"]["met"] is True
    assert by_name["steps: highest held step / capture"]["value"] == round(5000 / 7300, 3)
    assert by_name["steps: highest held step / capture"]["met"] is False
    assert by_name["freshness p99 to cassandra, s"]["met"] is True
    assert by_name["freshness p99 to cassandra, s (stretch)"]["met"] is False
    assert by_name["freshness p99 to redis, s"]["met"] is None
    assert by_name["freshness p99 to rest, s"]["met"] is False
    assert by_name["footprint: whole stack resident, GiB"] == {
        "target": "footprint: whole stack resident, GiB", "value": 5.0, "limit": 6.0, "met": True}
    assert all(t["met"] is None for t in logic.evaluate_targets({}))


def test_phases_and_rates_flags():
    assert cli.parse_phases("freshness,capture") == ["capture", "freshness"]
    assert cli.parse_phases("all") == list(cli.PHASES)
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_phases("capture,latency")
    assert cli.parse_rates("2k,500, 1000,2000") == [500, 1000, 2000]
    for bad in ("", "0", "fast"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_rates(bad)
    args = cli.build_parser().parse_args([])
    assert args.phases == list(cli.PHASES) and args.steps == [500, 1000, 2000, 5000]
    assert (args.changes, args.step_seconds, args.warmup, args.freshness_rate) == (100_000, 120, 15, 1000)


def test_header_tolerates_a_missing_git(tmp_path):
    assert cli.git_revision(tmp_path) == (None, None)
    head = cli.header(["--phases", "capture"], cli.build_parser().parse_args(["--phases", "capture"]))
    assert head["machine"]["cores"] >= 1 and head["machine"]["memory_bytes"] > 0
    assert head["command"] == "make bench ARGS='--phases capture'"


def test_summary_lines_cover_each_phase():
    result = {"phases": {
        "capture": {"changes_per_s": 7300.0, "seconds": 13.7, "load": {"changes": 100_000}},
        "backlog": {"changes": 100_000, "queries": {"core": {"changes_per_s": 9000.0}, "rest": {"changes_per_s": None}},
                    "pipeline_changes_per_s": None, "ratio_to_capture": None},
        "steps": {"steps": [{"rate": 500, "holds": True}, {"rate": 1000, "holds": None}],
                  "highest_held_changes_per_s": 500},
        "freshness": {"sinks": {"cassandra": {"count": 10, "missing": 0, "p50_s": 1, "p95_s": 1, "p99_s": 1,
                                              "max_s": 2}, "redis": {"error": "no at field"}}},
    }, "targets": logic.evaluate_targets({})}
    text = "\n".join(cli.summary_lines(result))
    assert "7,300 changes/s" in text and "rest -" in text and "1,000 generator-limited" in text
    assert "no at field" in text and "not measured" in text


# --- readers over local files and samples -------------------------------------------------

def _batch(checkpoint, batch: int, offsets: dict, mtime: float) -> None:
    import json
    import os

    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    (checkpoint / "offsets" / str(batch)).write_text("v1\n{\"batchWatermarkMs\":0}\n" + json.dumps(offsets) + "\n")
    commit = checkpoint / "commits" / str(batch)
    commit.write_text("v1\n{}\n")
    os.utime(commit, (mtime, mtime))


def test_first_reaching_commit_skips_later_batches_without_new_data(tmp_path):
    from cdc_local.bench import measure

    checkpoint = tmp_path / "core"
    _batch(checkpoint, 0, {"t": {"0": 10}}, 100.0)
    _batch(checkpoint, 1, {"t": {"0": 50}}, 105.0)
    _batch(checkpoint, 2, {"t": {"0": 50}}, 110.0)   # a batch with no new data
    assert measure.first_reaching_commit(tmp_path, "core", {"t": {0: 50}}) == 105.0
    assert measure.first_reaching_commit(tmp_path, "core", {"t": {0: 60}}) is None
    assert measure.first_reaching_commit(tmp_path, "missing", {"t": {0: 1}}) is None


class FakeSampler:
    interval = 0.01

    def __init__(self, samples):
        self.samples = samples


def test_capture_settles_once_the_offsets_stop_moving():
    import time

    from cdc_local.bench import measure

    now = time.time()
    moving = FakeSampler([(now - 1.0, 0), (now - 0.2, 900), (now - 0.1, 1000)])
    assert measure.wait_settled(moving, 1000, 0, quiet_s=0.05, timeout=5, say=lambda _: None)
    short = FakeSampler([(now - 1.0, 0), (now, 500)])   # far from the expected count: waits longer
    started = time.time()
    assert measure.wait_settled(short, 1000, 0, quiet_s=0.05, timeout=5, say=lambda _: None)
    assert time.time() - started >= 0.4
