"""The benchmark's pure logic: percentiles, open-loop schedule, catching up, lag flatness, summaries."""
from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

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
        "trickle": {"trickle": {"groups": {logic.SPARK_GROUP: {"cores": 0.25}}}},
        "backlog": {"pipeline_changes_per_s": 6200.0, "capture_changes_per_s": 7300.0},
        "ceiling": {"capture": {"changes_per_s": 10_000.0}},
        "steps": {"highest_held_changes_per_s": 2000},
        "freshness": {"spark_cpu": {"ms_per_change": 0.45},
                      "sinks": {"cassandra": {"p99_s": 1.4}, "redis": {"error": "no at"}, "rest": {"p99_s": 3.5}}},
        "footprint": {"loads": {"backlog": {"total_pss_max_bytes": 4 * 2**30}, "step": {"total_pss_max_bytes": None}}},
    }
    by_name = {t["target"]: t for t in logic.evaluate_targets(phases)}
    assert by_name["trickle: Spark cores"]["met"] is False
    assert by_name["freshness: Spark CPU ms per change"]["met"] is True
    assert by_name["backlog: changes/s through every sink"]["met"] is True
    assert by_name["backlog: pipeline / Debezium capture alone"]["value"] == 0.62
    assert by_name["backlog: pipeline / Debezium capture alone"]["met"] is True
    assert by_name["steps: highest held step, changes/s"]["met"] is False
    assert by_name["freshness p99 to cassandra, s"]["met"] is True
    assert by_name["freshness p99 to redis, s"]["met"] is None
    assert by_name["freshness p99 to rest, s"]["met"] is False
    assert by_name["footprint: whole stack PSS under load, GiB"] == {
        "target": "footprint: whole stack PSS under load, GiB", "value": 4.0, "limit": 4.5, "met": True}
    assert all(t["met"] is None for t in logic.evaluate_targets({}))
    none_held = {t["target"]: t for t in logic.evaluate_targets(
        {"steps": {"steps": [{"rate": 3000, "holds": False}], "highest_held_changes_per_s": None}})}
    assert none_held["steps: highest held step, changes/s"]["value"] == 0
    assert none_held["steps: highest held step, changes/s"]["met"] is False


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
    assert args.phases == list(cli.PHASES) and args.steps == [500, 1000, 2000, 3000, 5000]
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


# --- CPU by process tree ------------------------------------------------------------------

def test_busy_seconds_are_the_machines_own_work():
    times = {"user": 10.0, "nice": 1.0, "system": 4.0, "idle": 100.0, "iowait": 7.0, "irq": 0.5, "softirq": 0.5,
             "steal": 3.0, "guest": 2.0, "guest_nice": 0.0}
    assert logic.busy_seconds(times) == 16.0       # idle, iowait, steal and guest (inside user) left out


def test_spark_roots_are_the_stream_driver_and_executors():
    app = "spark_cdc_multi_sink.py"
    jvm = ["/usr/lib/jvm/java-17/bin/java", "-cp", "x", "org.apache.spark.deploy.SparkSubmit", "--name", "cdc-stream",
           f"/repo/spark_jobs/{app}", "--sinks", "cassandra"]
    driver = ["/venv/bin/python", f"/repo/spark_jobs/{app}", "--checkpoint-root", "/c"]
    executor = ["java", "-cp", "y", "org.apache.spark.executor.CoarseGrainedExecutorBackend", "--app-id", "a"]
    assert logic.is_spark_process(jvm, app) and logic.is_spark_process(driver, app)
    assert logic.is_spark_process(executor, app)
    assert not logic.is_spark_process(["bash", "/venv/bin/spark-submit", f"/repo/{app}"], app)  # before it execs java
    assert not logic.is_spark_process(["airflow", "worker", "--", "01a2"], app)
    assert not logic.is_spark_process(["/venv/bin/python", "-m", "pyspark.daemon"], app)  # inside the tree, not a root
    assert not logic.is_spark_process([], app)


def test_groups_are_process_trees_and_the_spark_tree_is_not_counted_twice():
    parents = {1: 0, 10: 1, 11: 10, 12: 11, 13: 12, 14: 13, 15: 13, 16: 15, 20: 1, 21: 20, 30: 1}
    #   supervisord 1 -> airflow-scheduler 10 -> worker 11 -> task 12 -> spark JVM 13 -> driver 14, daemon 15 -> 16
    #                 -> cassandra 20 -> 21;   30: not in any group
    groups = logic.assign_groups(parents, [("spark", [13, 14]), ("airflow-scheduler", [10]), ("cassandra", [20, 99])])
    assert {p for p, g in groups.items() if g == "spark"} == {13, 14, 15, 16}
    assert {p for p, g in groups.items() if g == "airflow-scheduler"} == {10, 11, 12}
    assert {p for p, g in groups.items() if g == "cassandra"} == {20, 21}
    assert 30 not in groups and 99 not in groups and 1 not in groups
    # Listed the other way round, the scheduler's tree would hold Spark: the order is the rule.
    assert logic.assign_groups(parents, [("airflow-scheduler", [10]), ("spark", [13])])[16] == "airflow-scheduler"


def test_cpu_between_interpolates_each_groups_cumulative_seconds():
    samples = [(0.0, {"spark": 0.0, "m": 0.0}), (1.0, {"spark": 2.0, "m": 3.0}),
               (2.0, {"spark": 2.0, "m": 4.0, "redis": 1.0}), (3.0, {"spark": 5.0, "m": 8.0, "redis": 1.5})]
    window = logic.cpu_between(samples, 0.5, 2.5)
    assert window["spark"] == pytest.approx(2.5)        # 1.0 at 0.5 -> 3.5 at 2.5
    assert window["m"] == pytest.approx(4.5)
    assert window["redis"] == pytest.approx(1.25)       # 0 until it appears
    assert logic.cpu_between(samples, 2.0, 2.0) == {}
    assert logic.cpu_between([], 0, 1) == {}
    assert logic.cpu_between(samples, -5.0, 0.0) == {"m": 0.0, "redis": 0.0, "spark": 0.0}


def test_cpu_summary_in_cores_with_the_rest_of_the_machine():
    s = logic.cpu_summary({"spark-driver": 6.0, "kafka": 1.0}, machine_busy_s=10.0, wall_s=10.0, cores=2)
    assert s["groups"]["spark-driver"] == {"cpu_s": 6.0, "cores": 0.6}
    assert list(s["groups"]) == ["spark-driver", "kafka"]    # busiest first
    assert (s["machine_cores"], s["machine_busy_pct"], s["outside_groups_cores"], s["groups_cores"]) == (1.0, 50.0,
                                                                                                         0.3, 0.7)
    assert logic.cpu_summary({"a": 1.0}, None, 0.0, 2)["machine_cores"] is None


def test_cpu_per_change_and_above_idle():
    f = logic.cpu_per_change(12.0, 1200, wall_s=60.0, idle_cores=0.1)
    assert f["ms_per_change"] == 10.0 and f["cores"] == 0.2
    assert f["ms_per_change_above_idle"] == 5.0          # (12 - 0.1 * 60) s over 1200 changes
    assert "ms_per_change_above_idle" not in logic.cpu_per_change(12.0, 1200, 60.0)
    partial = logic.cpu_per_change(12.0, 1200, 60.0, idle_cores=0.1, complete=False)
    assert partial["ms_per_change"] is None and partial["ms_per_change_above_idle"] is None and partial["incomplete"]
    assert partial["cpu_s"] == 12.0
    assert logic.cpu_per_change(3.0, 0, 10.0)["ms_per_change"] is None


def test_spark_cpu_settles_once_two_windows_agree():
    assert logic.cpu_settled([1.2, 0.6]) is False       # still falling from its start-up
    assert logic.cpu_settled([0.2, 0.04]) is False
    assert logic.cpu_settled([0.04, 0.035]) is True     # within 0.05 cores
    assert logic.cpu_settled([1.31, 1.18]) is True      # within 25 %: a steady start-up passes too,
    #                                                     which is why the wait also needs 60 s of age
    assert logic.cpu_settled([0.04]) is False


def test_cpu_sampler_puts_a_spark_executor_in_the_spark_group_not_in_its_parent():
    import subprocess
    import sys
    import time

    from cdc_local.bench import measure

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(0.5)"
    sampler = measure.CpuSampler(interval=0.1).start()
    own_from = time.process_time()
    child = subprocess.Popen([sys.executable, "-c", burn, logic.SPARK_EXECUTOR_CLASS])
    try:
        time.sleep(0.4)
        assert sampler.last_groups.get(child.pid) == logic.SPARK_GROUP
        started_own = time.process_time()
        while time.process_time() - started_own < 0.3:
            pass                                        # this process's own work: the bench group
        child.wait(timeout=30)
    finally:
        child.kill()
        sampler.stop()
    own = time.process_time() - own_from               # the burn and the sampling thread's passes
    groups, machine = sampler.between(sampler.samples[0][0], sampler.samples[-1][0])
    key = next(k for k in sampler.account.last if k[0] == child.pid)
    assert sampler.account.group[key] == logic.SPARK_GROUP
    assert sampler.account.first[key] == 0.0           # born after the first sample: counted from zero
    assert sampler.account.last[key] >= 0.55           # its burn (and start-up)
    assert groups[logic.SPARK_GROUP] >= 0.55           # (plus any real Spark stream on this machine)
    assert own - 0.1 <= groups[measure.BENCH_GROUP] <= own + 0.1   # ours, without the child's 0.6 s
    assert machine >= groups[measure.BENCH_GROUP] + 0.55


def test_cpu_sampler_skips_zombies_which_would_pass_for_their_parents_group():
    import subprocess
    import sys
    import time

    from cdc_local.bench import measure

    sampler = measure.CpuSampler(interval=None).start()
    child = subprocess.Popen([sys.executable, "-c", "pass", logic.SPARK_EXECUTOR_CLASS])
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            with open(f"/proc/{child.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break                           # exited, not yet waited for: a zombie
            time.sleep(0.05)
        sampler.sample()
        assert child.pid not in sampler.last_groups
    finally:
        child.wait(timeout=30)
        sampler.stop()


# --- ceilings and the headline ------------------------------------------------------------

def test_ceiling_positions_start_above_real_ones_and_above_earlier_runs():
    assert logic.ceiling_base_position(0.0) == 10**15
    first = logic.ceiling_base_position(1_800_000_000.0)
    assert first == 1_800_000_000 * 10**6
    later = logic.ceiling_base_position(1_800_000_060.0)       # a minute later
    assert later > first + 2 * 10**6                          # above all of a 1M-change run's positions


def test_ceiling_ids_are_below_the_end_and_disjoint():
    ids, warm = logic.ceiling_ids(100_000, 20)
    assert (ids.start, ids.stop, warm.start, warm.stop) == (1_999_900_000, 2_000_000_000, 1_999_899_980, 1_999_900_000)
    assert not set(ids) & set(warm) and ids.stop - 1 < 2**31   # an int4 / Cassandra int
    with pytest.raises(ValueError):
        logic.ceiling_ids(0, 20)


def test_sum_stats_adds_numbers_field_by_field():
    assert logic.sum_stats([{"applied": 3, "skipped_stale": 0, "kind": "a"},
                            {"applied": 4, "skipped_stale": 1, "kind": "b"}]) == {"applied": 7, "skipped_stale": 1,
                                                                                  "kind": "b"}
    assert logic.sum_stats([]) == {}


def test_sink_ceiling_figures():
    f = logic.sink_ceiling_figures(10_000, wall_s=2.0, bench_cpu_s=1.5, service_cpu={"redis": 0.8, "kafka": 0.0},
                                   machine_busy_s=3.0, cores=2)
    assert f["changes_per_s"] == 5000.0 and f["bench_cores"] == 0.75 and f["bench_cpu_ms_per_change"] == 0.15
    assert f["services"] == {"redis": {"cpu_s": 0.8, "cores": 0.4, "ms_per_change": 0.08}}   # idle ones left out
    assert f["machine_cores"] == 1.5 and f["machine_busy_pct"] == 75.0


def test_headline_is_the_pipeline_over_capture_alone_and_over_each_ceiling():
    phases = {
        "backlog": {"changes": 100_000, "pipeline_changes_per_s": 1500.0, "capture_changes_per_s": 8000.0,
                    "queries": {"core": {"changes_per_s": 2600.0}, "cassandra_sink": {"changes_per_s": 1500.0},
                                "redis_sink": {"changes_per_s": 1800.0}}},
        "ceiling": {"changes": 100_000, "capture": {"changes_per_s": 12_000.0, "stream": "stopped by the bench"},
                    "sinks": {"cassandra": {"changes_per_s": 6000.0}, "redis": {"changes_per_s": 30_000.0},
                              "rest": {"error": "boom"}}},
    }
    h = logic.headline(phases, {"cassandra": "cassandra_sink", "redis": "redis_sink", "rest": "rest_sink"})
    assert h["pipeline_over_capture_alone"] == 0.125
    assert h["sinks"]["cassandra"]["pipeline_over_ceiling"] == 0.25
    assert h["sinks"]["redis"]["query_over_ceiling"] == 0.06
    assert h["sinks"]["rest"] == {"ceiling_changes_per_s": None, "pipeline_over_ceiling": None, "query": "rest_sink",
                                  "query_changes_per_s": None, "query_over_ceiling": None}
    only_ceiling = logic.headline({"ceiling": phases["ceiling"]}, {})
    assert only_ceiling["capture_alone_changes_per_s"] == 12_000.0 and only_ceiling["pipeline_over_capture_alone"] is None
    assert logic.headline({"steps": {}}, {}) is None


# --- the sinks' synthetic changes ---------------------------------------------------------

def _catalogue():
    import random

    from cdc_local import traffic

    now = datetime(2026, 11, 27, 12, 0, 0)
    rng = random.Random(7)
    return traffic.make_catalogue(rng, 24, now), [traffic._uuid(rng) for _ in range(300)], now  # noqa: SLF001


def test_sink_changes_are_normalized_changes_in_the_backlogs_mix():
    from cdc_platform import semantics

    catalogue, users, now = _catalogue()
    ids = range(1_999_990_000, 2_000_000_000)
    load = loadgen.sink_changes(ids, catalogue, users, base_position=10**15, now=now, source_ts_ms=1, seed=5)
    changes = load.changes
    assert len(changes) == 10_000 and load.inserts + load.updates + load.deletes == 10_000
    assert 0.07 < load.updates / 10_000 < 0.13 and 0.02 < load.deletes / 10_000 < 0.06
    assert all(tuple(c) == loadgen.CHANGE_FIELDS for c in changes + load.cleanup)
    assert [c["position"] for c in changes + load.cleanup] == list(range(10**15, 10**15 + 10_000 + len(load.cleanup)))
    assert all(c["id"] in ids for c in changes)
    lengths = {c["id"]: c["length_seconds"] for c in catalogue}
    end_us = semantics.epoch_micros(now)
    for c in changes:
        assert c["device"] in semantics.DEVICES and c["content_id"] in lengths and c["user_id"] == c["user_id"].lower()
        assert c["length_seconds"] == lengths[c["content_id"]]
        assert c["engagement_pct"] == semantics.engagement_pct(c["duration_ms"], c["length_seconds"])
        assert end_us - 900 * 10**6 <= c["event_ts"] <= end_us     # never past the given event time
        assert c["op"] in ("c", "u", "d") and c["duration_ms"] >= 0


def test_sink_changes_then_cleanup_leave_no_row_behind():
    """Replayed through a position fence per row (what every sink keeps), the changes touch only
    rows they inserted, never one they deleted, and the cleanup deletes every row still live."""
    catalogue, users, now = _catalogue()
    load = loadgen.sink_changes(range(100, 2100), catalogue, users, base_position=50, now=now, source_ts_ms=1, seed=9)
    fence: dict[int, tuple[int, bool]] = {}
    for c in load.changes + load.cleanup:
        if c["op"] == "c":
            assert c["id"] not in fence
        else:
            assert c["id"] in fence and not fence[c["id"]][1], c   # an update or delete of a live row
        assert c["position"] > fence.get(c["id"], (-1, False))[0]   # never stale
        fence[c["id"]] = (c["position"], c["op"] == "d")
    assert fence and all(deleted for _, deleted in fence.values())
    assert len(load.cleanup) == load.inserts - load.deletes
    assert {c["op"] for c in load.cleanup} == {"d"}
    again = loadgen.sink_changes(range(100, 2100), catalogue, users, base_position=50, now=now, source_ts_ms=1, seed=9)
    assert again.changes == load.changes                          # seeded


def test_change_fields_are_the_streams_change_schema():
    pytest.importorskip("pyspark")
    from cdc_stream import schemas

    assert loadgen.CHANGE_FIELDS == tuple(f.name for f in schemas.CHANGE.fields)


def test_epoch_micros():
    from cdc_platform import semantics  # what the ceiling's synthetic changes use

    assert semantics.epoch_micros(datetime(1970, 1, 1, 0, 0, 1, 5)) == 1_000_005
    assert semantics.epoch_micros(datetime(1970, 1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1)))) == 0


# --- the sink writers, measured in this process --------------------------------------------

def test_sink_settings_from_the_stack_env():
    import json

    from cdc_local.bench import ceiling

    env = {"KAFKA_BOOTSTRAP": "127.0.0.1:9092", "CASSANDRA_HOST": "127.0.0.1", "CASSANDRA_PORT": "9042",
           "CASSANDRA_SINK_USER": "cdc_sink", "CASSANDRA_SINK_PASSWORD": "pw", "REDIS_URL": "redis://:x@h:6379/0",
           "API_URL": "http://127.0.0.1:8090", "API_TOKEN": "t",
           "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps({"conn_type": "kafka", "extra": {
               "bootstrap.servers": "127.0.0.1:9094", "security.protocol": "SASL_PLAINTEXT"}})}
    s = ceiling.sink_settings(env)
    assert (s.bootstrap, s.cassandra_user, s.cassandra_password, s.cassandra_port) == ("127.0.0.1:9094", "cdc_sink",
                                                                                     "pw", 9042)
    assert dict(s.kafka_connection) == {"security.protocol": "SASL_PLAINTEXT"}
    assert (s.redis_url, s.api_url, s.api_token) == (env["REDIS_URL"], env["API_URL"], "t")
    del env["AIRFLOW_CONN_KAFKA_DEFAULT"]
    assert ceiling.sink_settings(env).bootstrap == "127.0.0.1:9092"
    assert ceiling.kafka_connection({"AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps(
        {"extra": json.dumps({"client.id": "x"})})}) == {"client.id": "x"}
    assert ceiling.kafka_connection({"AIRFLOW_CONN_KAFKA_DEFAULT": "kafka://h:9092"}) == {}


def test_a_sinks_writer_is_called_in_batches_and_timed_with_this_processes_cpu():
    import time
    from dataclasses import dataclass

    from cdc_local.bench import ceiling

    @dataclass
    class Stats:
        applied: int = 0

    calls = []

    def write(changes, contents, settings):
        calls.append(len(changes))
        t = time.process_time()
        while time.process_time() - t < 0.1:
            pass
        return Stats(applied=len(changes))

    f = ceiling.measure_writer("redis", write, [{"id": i} for i in range(7)], settings=None, batch=3, cores=2)
    assert calls == [3, 3, 1] and f["calls"] == 3 and f["stats"] == {"applied": 7}
    assert f["bench_cpu_s"] >= 0.3 and f["seconds"] >= 0.3 and f["changes_per_s"] == pytest.approx(7 / f["seconds"], rel=0.01)
    assert f["service"] == "redis" and "bench (load generator)" not in f["services"]
    calls.clear()
    assert ceiling.write_all(write, [{"id": i} for i in range(7)], None, batch=0) == {"applied": 7} and calls == [7]


def test_a_sink_without_write_changes_is_named(monkeypatch):
    import sys
    import types

    from cdc_local.bench import ceiling

    monkeypatch.setitem(sys.modules, "cdc_stream.nowhere_sink", types.ModuleType("cdc_stream.nowhere_sink"))
    with pytest.raises(RuntimeError, match="nowhere_sink has no write_changes"):
        ceiling.writer("nowhere")


# --- the new flags and summary lines ------------------------------------------------------

def test_trickle_and_ceiling_flags():
    assert cli.PHASES[0] == "trickle" and cli.PHASES.index("ceiling") > cli.PHASES.index("freshness")
    assert cli.parse_phases("ceiling,trickle,backlog") == ["trickle", "backlog", "ceiling"]
    assert cli.parse_sinks("rest, cassandra") == ["cassandra", "rest"]
    assert cli.parse_sinks("all") == ["cassandra", "redis", "rest"] and cli.parse_sinks("none") == []
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_sinks("kafka")
    args = cli.build_parser().parse_args([])
    assert (args.trickle_rate, args.trickle_seconds, args.idle_seconds) == (20, 60, 10)
    assert (args.ceiling_sinks, args.ceiling_stream, args.ceiling_batch) == (["cassandra", "redis", "rest"], "stop",
                                                                             50_000)
    args = cli.build_parser().parse_args(["--phases", "trickle", "--trickle-seconds", "30", "--ceiling-stream",
                                          "running"])
    assert args.trickle_seconds == 30.0 and args.ceiling_stream == "running"
    for bad in (["--trickle-rate", "0"], ["--changes", "-5"], ["--ceiling-stream", "pause"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(bad)


def test_summary_lines_show_spark_per_change_the_ceilings_and_the_headline():
    spark = {"cpu_s": 30.0, "seconds": 60.0, "cores": 0.5, "changes": 1200, "ms_per_change": 25.0,
             "idle_cores": 0.3, "ms_per_change_above_idle": 10.0}
    cpu = lambda s, m: {"groups": {"spark-driver": {"cpu_s": s * 60, "cores": s}}, "machine_cores": m}  # noqa: E731
    phases = {
        "trickle": {"rate": 20, "seconds": 60, "idle": cpu(0.3, 0.7), "trickle": cpu(0.5, 1.1), "spark_cpu": spark},
        "backlog": {"changes": 100_000, "queries": {"core": {"changes_per_s": 2600.0}},
                    "pipeline_changes_per_s": 1500.0, "ratio_to_capture": 0.19,
                    "spark_cpu": {**spark, "ms_per_change": 1.23, "ms_per_change_above_idle": 1.01}},
        "steps": {"steps": [{"rate": 500, "holds": True, "spark_cpu": {**spark, "ms_per_change": 2.5}}],
                  "highest_held_changes_per_s": 500},
        "ceiling": {"changes": 100_000, "capture": {"changes_per_s": 12_000.0, "load": {"changes": 100_000},
                                                   "stream": "stopped by the bench"},
                    "sinks": {"redis": {"changes_per_s": 30_000.0, "bench_cpu_ms_per_change": 0.021, "service": "redis",
                                        "services": {"redis": {"ms_per_change": 0.012}}},
                              "rest": {"error": "RuntimeError: down"}}},
    }
    result = {"phases": phases, "targets": [],
              "headline": logic.headline(phases, {"redis": "redis_sink", "rest": "rest_sink"})}
    text = "\n".join(cli.summary_lines(result))
    assert "Spark 0.50 cores" in text and "idle: Spark 0.30 cores" in text and "Spark 25.00 ms/change (10.00 above idle)" in text
    assert "Spark 1.23 ms/change (1.01 above idle)" in text and "500 held (Spark 2.50 ms/change" in text
    assert "Debezium capture alone 12,000 changes/s" in text and "redis     writer alone 30,000 changes/s" in text
    assert "RuntimeError: down" in text
    assert text.splitlines()[-3].startswith("headline    pipeline (backlog) 1,500 changes/s / Debezium capture alone "
                                            "12,000 changes/s (stream stopped by the bench) = 0.125")
    assert "redis writer ceiling 30,000 changes/s = 0.05" in text



def test_after_a_failure_every_touched_row_gets_a_newer_delete():
    catalogue, users, now = _catalogue()
    load = loadgen.sink_changes(range(10, 60), catalogue, users, base_position=1000, now=now, source_ts_ms=1, seed=2)
    last = load.cleanup[-1]["position"]
    undo = loadgen.delete_every_row(load.changes, last + 1)
    assert sorted(c["id"] for c in undo) == sorted({c["id"] for c in load.changes})
    assert all(c["op"] == "d" and c["position"] > last for c in undo)
    assert len({c["position"] for c in undo}) == len(undo)


# --- the ceiling's handling of the stream -------------------------------------------------

@pytest.fixture
def ceiling_world(monkeypatch, tmp_path):
    """phases.ceiling with the platform replaced by fakes: which stream calls it makes."""
    from cdc_local import pipeline_driver
    from cdc_local.bench import measure, phases

    world = {"drivers": [4517], "task": "running", "calls": [], "capture_error": None, "highest": 1000}

    def capture(ctx, changes, tx_size, pipeline, wait_idle=True):
        world["calls"].append(("capture", pipeline, wait_idle))
        if world["capture_error"]:
            raise world["capture_error"]
        return {"changes_per_s": 9000.0}, None

    monkeypatch.setattr(measure, "max_source_event_id", lambda env: world["highest"])
    monkeypatch.setattr(phases.Context, "idle", lambda self: world["calls"].append(("idle",)) or True)
    monkeypatch.setattr(pipeline_driver, "airflow_client", lambda env: "client")
    monkeypatch.setattr(pipeline_driver, "stream_driver_pids", lambda: list(world["drivers"]))
    monkeypatch.setattr(pipeline_driver, "stream_task_state", lambda client: world["task"])
    monkeypatch.setattr(pipeline_driver, "stop_stream", lambda client, env: world["calls"].append(("stop",)))
    monkeypatch.setattr(pipeline_driver, "start_stream",
                        lambda client, env, timeout, log: world["calls"].append(("start",)))
    monkeypatch.setattr(phases, "capture_and_backlog", capture)
    monkeypatch.setattr(phases, "_sink_ceilings", lambda *a: world["calls"].append(("sinks",)))
    ctx = phases.Context(env={}, queries=(), root=tmp_path, tombstones=True, seed=1, say=lambda line: None)
    return world, ctx, phases


def test_the_ceiling_stops_the_stream_and_restarts_it_even_after_a_failure(ceiling_world):
    world, ctx, phases = ceiling_world
    out: dict = {}
    phases.ceiling(ctx, out, 5000, 500, ["redis"], "stop", 0)
    assert [c[0] for c in world["calls"]] == ["idle", "stop", "capture", "sinks", "start", "idle"]
    assert ("capture", False, False) in world["calls"]        # no idle wait with the stream stopped
    assert out["stream"] == out["capture"]["stream"] == "stopped by the bench" and out["drained_after_restart"]

    world["calls"].clear()
    world["capture_error"] = RuntimeError("connector down")
    failed: dict = {}
    with pytest.raises(RuntimeError, match="connector down"):
        phases.ceiling(ctx, failed, 5000, 500, ["redis"], "stop", 0)
    assert [c[0] for c in world["calls"]] == ["idle", "stop", "capture", "start", "idle"]


def test_the_ceiling_leaves_a_stream_it_cannot_or_should_not_stop(ceiling_world):
    world, ctx, phases = ceiling_world
    world["task"] = "failed"                 # a driver runs, but not as cdc_stream's task
    out: dict = {}
    phases.ceiling(ctx, out, 5000, 500, [], "stop", 0)
    assert "stop" not in [c[0] for c in world["calls"]] and "start" not in [c[0] for c in world["calls"]]
    assert out["stream"].startswith("running (a stream driver runs outside cdc_stream")
    assert "sinks" not in [c[0] for c in world["calls"]]     # --ceiling-sinks none

    world.update(task="running", calls=[])
    phases.ceiling(ctx, out, 5000, 500, ["cassandra"], "running", 0)
    assert [c[0] for c in world["calls"]] == ["idle", "capture", "sinks"]
    assert out["capture"]["stream"].startswith("running (--ceiling-stream running")

    world.update(drivers=[], calls=[])
    phases.ceiling(ctx, out, 5000, 500, ["cassandra"], "stop", 0)
    assert [c[0] for c in world["calls"]] == ["idle", "capture", "sinks"]
    assert out["stream"].startswith("stopped (no Spark driver")


def test_the_ceiling_refuses_ids_the_source_could_hold(ceiling_world):
    world, ctx, phases = ceiling_world
    world["highest"] = 1_999_999_990
    with pytest.raises(RuntimeError, match="would collide"):
        phases.ceiling(ctx, {}, 5000, 500, ["redis"], "stop", 0)
    assert world["calls"] == []                                # nothing stopped, nothing written
