"""The benchmark's pure arithmetic: no services, no clocks, no I/O (unit-tested in tests/unit/test_bench.py).

Offsets are ``{topic: {partition: offset}}``; time series are lists of ``(wall seconds, value)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

Offsets = Mapping[str, Mapping[int, int]]
Series = Sequence[tuple[float, float]]

# Targets of issue 18 (the benchmark reports them; nothing asserts them).
TARGET_TRICKLE_SPARK_CORES = 0.2             # Spark side's cores at the trickle (20 changes/s)
TARGET_MS_PER_CHANGE = 0.5                   # Spark CPU per change at a steady 1,000/s (freshness)
TARGET_P99_S = {"cassandra": 1.5, "redis": 1.5, "rest": 1.5}
TARGET_BACKLOG_CHANGES_PER_S = 4_000         # the backlog through every sink
TARGET_RATIO_TO_CAPTURE_ALONE = 0.5          # ... over Debezium's capture alone (ceiling phase)
TARGET_STEP_CHANGES_PER_S = 3_000            # highest steady step held by every sink
TARGET_RESIDENT_BYTES = int(4.5 * 2**30)     # the stack's PSS under load


# --- percentiles --------------------------------------------------------------------------

def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of an ascending sequence, linearly interpolated between ranks."""
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def distribution(values: Iterable[float], digits: int = 3) -> dict:
    """count, mean, p50, p95, p99 and max of the values (seconds); only count when there are none."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    r = lambda v: round(v, digits)  # noqa: E731
    return {"count": len(ordered), "mean_s": r(sum(ordered) / len(ordered)),
            "p50_s": r(percentile(ordered, 50)), "p95_s": r(percentile(ordered, 95)),
            "p99_s": r(percentile(ordered, 99)), "max_s": r(ordered[-1])}


def windowed_percentile(points: Iterable[tuple[float, float]], window_s: float, q: float = 99,
                        digits: int = 3) -> list[tuple[float, float]]:
    """``(start offset of the window, q-th percentile of the values in it)`` per window of ``window_s``,
    windows keyed by the first element of each point (e.g. commit time); shows a latency that grows."""
    points = sorted(points)
    if not points:
        return []
    origin = points[0][0]
    buckets: dict[int, list[float]] = {}
    for t, value in points:
        buckets.setdefault(int((t - origin) // window_s), []).append(value)
    return [(round(i * window_s, 1), round(percentile(sorted(v), q), digits)) for i, v in sorted(buckets.items())]


# --- open-loop schedule -------------------------------------------------------------------

@dataclass(frozen=True)
class OpenLoopSchedule:
    """Row i is due at ``start + i / rate``; the generator writes what is due and never waits on
    the pipeline. ``rate`` 0 means every row is due at once (as fast as PostgreSQL takes them)."""
    rate: float
    total: int
    start: float

    def due(self, now: float) -> int:
        """How many rows should have been written by ``now``."""
        if self.rate <= 0:
            return self.total
        if now < self.start:
            return 0
        return min(self.total, math.floor((now - self.start) * self.rate) + 1)

    def due_at(self, index: int) -> float:
        return self.start if self.rate <= 0 else self.start + index / self.rate

    def behind(self, now: float, written: int) -> float:
        """Seconds the next unwritten row is overdue (0 when on time or finished)."""
        if written >= self.total or self.rate <= 0:
            return 0.0
        return max(0.0, now - self.due_at(written))


def kept_rate(target: float, achieved: float, max_behind_s: float, tolerance: float = 0.95,
              max_late_s: float = 1.0) -> bool:
    """The generator held its schedule: at least 95 % of the target and never over a second late."""
    return achieved >= tolerance * target and max_behind_s <= max_late_s


def window_count(commits: Iterable[tuple[float, int]], t0: float, t1: float) -> int:
    """Rows committed within [t0, t1] from a log of ``(commit time, rows)``."""
    return sum(n for t, n in commits if t0 <= t <= t1)


# --- offsets, lag, catching up ------------------------------------------------------------

def reached(committed: Offsets, ends: Offsets) -> bool:
    """Every partition of ``ends`` is committed at least up to its end offset."""
    return all(committed.get(topic, {}).get(p, -1) >= end for topic, parts in ends.items()
               for p, end in parts.items())


def lag(committed: Offsets, ends: Offsets) -> int:
    """Messages behind: the sum over partitions of end minus committed (never negative)."""
    return sum(max(0, end - committed.get(topic, {}).get(p, 0)) for topic, parts in ends.items()
               for p, end in parts.items())


class CatchUp:
    """Which stream queries have applied a load, checked in pipeline order.

    A query's topics and partitions come from its own checkpoint. Its end offsets are read once,
    and only when every query before it has caught up: by then nothing upstream writes to its
    topics any more (the core query feeds the sink queries). A query has caught up when its
    last committed batch reaches those ends; the time is that commit's mtime."""

    def __init__(self, queries: Sequence[str], origin: float):
        self.queries = list(queries)
        self.origin = origin
        self.ends: dict[str, dict[str, dict[int, int]]] = {}
        self.done: dict[str, float] = {}

    def pending(self) -> list[str]:
        return [q for q in self.queries if q not in self.done]

    def update(self, committed_of, ends_of, now: float, reached_at=None) -> None:
        """``committed_of(query)`` -> (offsets, commit mtime) or None; ``ends_of(offsets)`` -> end
        offsets of the same topics and partitions, read now; ``reached_at(query, ends)`` -> the
        mtime of the earliest commit that reached them (a query may commit batches without new
        data afterwards), or None to use the last commit's."""
        for query in self.queries:
            if query in self.done:
                continue
            committed = committed_of(query)
            if committed is None:
                return  # never committed a batch: it cannot have caught up, nor can those after it
            offsets, mtime = committed
            if query not in self.ends:
                self.ends[query] = {t: dict(p) for t, p in ends_of(offsets).items()}
            if not reached(offsets, self.ends[query]):
                return
            earliest = reached_at(query, self.ends[query]) if reached_at else None
            self.done[query] = max(self.origin, min(mtime if earliest is None else min(earliest, mtime), now))

    def seconds(self) -> dict[str, float | None]:
        return {q: (round(self.done[q] - self.origin, 2) if q in self.done else None) for q in self.queries}


# --- capture (Debezium into Kafka) --------------------------------------------------------

def capture_span(samples: Series) -> tuple[float, float, float] | None:
    """From end-offset totals sampled over time, starting before the load: ``(origin, end, messages)``.

    ``origin`` is the last sample before the first movement (no message of the load yet), ``end``
    the first sample at the final total. None when the offsets never moved."""
    if len(samples) < 2:
        return None
    baseline, final = samples[0][1], samples[-1][1]
    if final <= baseline:
        return None
    first = next(i for i, (_, v) in enumerate(samples) if v > baseline)
    last = next(i for i, (_, v) in enumerate(samples) if v >= final)
    return samples[first - 1][0], samples[last][0], final - baseline


def value_at(samples: Series, t: float) -> float:
    """The sampled series linearly interpolated at ``t`` (clamped to its ends)."""
    if not samples:
        raise ValueError("no samples")
    if t <= samples[0][0]:
        return samples[0][1]
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        if t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return samples[-1][1]


def rate_between(samples: Series, t0: float, t1: float) -> float | None:
    if t1 <= t0 or not samples:
        return None
    return (value_at(samples, t1) - value_at(samples, t0)) / (t1 - t0)


def messages_per_change(changes: int, deletes: int, tombstones: bool) -> float:
    """Debezium writes one message per change, plus a tombstone per delete when enabled."""
    return 1.0 if changes <= 0 else (changes + (deletes if tombstones else 0)) / changes


# --- backlog ------------------------------------------------------------------------------

def backlog_summary(changes: int, origin: float, capture_end: float, caught_up_at: Mapping[str, float | None],
                    write_seconds: float) -> dict:
    """Rates over the same origin (the last end-offset sample before the load's first message):
    capture = changes / (last offset movement - origin), each query = changes / (its catch-up - origin).
    The headline is the slowest query's rate over the capture rate."""
    capture_s = capture_end - origin
    capture_rate = changes / capture_s if capture_s > 0 else None
    queries = {}
    for query, at in caught_up_at.items():
        seconds = None if at is None else at - origin
        queries[query] = {"seconds": None if seconds is None else round(seconds, 2),
                          "changes_per_s": round(changes / seconds, 1) if seconds and seconds > 0 else None}
    all_done = bool(queries) and all(q["seconds"] is not None for q in queries.values())
    slowest = max((q["seconds"] for q in queries.values()), default=None) if all_done else None
    pipeline_rate = changes / slowest if slowest else None
    return {
        "changes": changes,
        "source_write_seconds": round(write_seconds, 2),
        "source_write_changes_per_s": round(changes / write_seconds, 1) if write_seconds > 0 else None,
        "capture_seconds": round(capture_s, 2),
        "capture_changes_per_s": None if capture_rate is None else round(capture_rate, 1),
        "queries": queries,
        "pipeline_seconds": None if slowest is None else round(slowest, 2),
        "pipeline_changes_per_s": None if pipeline_rate is None else round(pipeline_rate, 1),
        "ratio_to_capture": (round(pipeline_rate / capture_rate, 3)
                             if pipeline_rate and capture_rate else None),
        # The writer slower than Debezium makes the capture rate a floor, not Debezium's speed.
        "capture_bounded_by_source": bool(write_seconds > 0 and capture_s > 0 and write_seconds >= 0.9 * capture_s),
    }


# --- sustained steps ----------------------------------------------------------------------

def thirds(values: Sequence[float]) -> tuple[float, float] | None:
    """Mean of the first and of the last third; None with fewer than three values."""
    n = len(values) // 3
    if n == 0:
        return None
    return sum(values[:n]) / n, sum(values[-n:]) / n


def lag_holds(lags: Sequence[float], tolerance: float) -> bool | None:
    """Flat lag: the last third's mean is not above the first third's by more than ``tolerance``
    (one step-second of changes, in messages). None when there are too few samples."""
    split = thirds(lags)
    if split is None:
        return None
    first, last = split
    return last <= first + tolerance


def next_step_rate(rate: float, growth: float, maximum: float) -> float | None:
    """The rate after the listed steps: grown by ``growth`` and rounded to a hundred, up to ``maximum``."""
    if growth <= 1:
        return None
    following = round(rate * growth / 100) * 100
    return following if rate < following <= maximum else None


def highest_held(steps: Sequence[Mapping]) -> float | None:
    """The highest step rate that every query held, with the generator on schedule."""
    held = [s["rate"] for s in steps if s.get("holds") is True]
    return max(held) if held else None


# --- footprint ----------------------------------------------------------------------------

class CpuAccount:
    """CPU seconds used by groups of processes over a phase, from snapshots of cumulative times.

    A process seen before the phase counts from its first snapshot; one created during the phase
    counts from zero. A process that exits loses only its time since its last snapshot."""

    def __init__(self, started: float):
        self.started = started
        self.first: dict[tuple, float] = {}
        self.last: dict[tuple, float] = {}
        self.group: dict[tuple, str] = {}

    def observe(self, group: str, key: tuple, create_time: float, cpu_seconds: float) -> None:
        if key not in self.first:
            self.first[key] = 0.0 if create_time >= self.started else cpu_seconds
        self.last[key] = cpu_seconds
        self.group[key] = group

    def seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for key, last in self.last.items():
            totals[self.group[key]] = totals.get(self.group[key], 0.0) + max(0.0, last - self.first[key])
        return totals


def footprint_summary(cpu_seconds: Mapping[str, float], memory: Mapping[str, Sequence[tuple[int, int]]],
                      totals: Sequence[int], wall_s: float, cores: int, machine_busy_s: float | None) -> dict:
    """Per group: CPU in cores and as a share of the machine, memory (PSS, RSS) mean and max;
    plus the peak of the summed PSS over the samples (the stack's resident total)."""
    groups = {}
    for name in sorted(set(cpu_seconds) | set(memory)):
        cpu = cpu_seconds.get(name, 0.0)
        mem = memory.get(name) or []
        pss = [p for p, _ in mem]
        groups[name] = {
            "cpu_cores": round(cpu / wall_s, 3) if wall_s > 0 else None,
            "cpu_share_pct": round(100 * cpu / (wall_s * cores), 1) if wall_s > 0 and cores else None,
            "pss_mean_mib": round(sum(pss) / len(pss) / 2**20, 1) if pss else None,
            "pss_max_mib": round(max(pss) / 2**20, 1) if pss else None,
            "rss_max_mib": round(max(r for _, r in mem) / 2**20, 1) if mem else None,
        }
    return {
        "seconds": round(wall_s, 1),
        "groups": groups,
        "total_pss_max_mib": round(max(totals) / 2**20, 1) if totals else None,
        "total_pss_max_bytes": max(totals) if totals else None,
        "machine_busy_pct": (round(100 * machine_busy_s / (wall_s * cores), 1)
                             if machine_busy_s is not None and wall_s > 0 and cores else None),
    }


# --- targets ------------------------------------------------------------------------------

def _get(d: Mapping | None, *path):
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def evaluate_targets(phases: Mapping) -> list[dict]:
    """Issue 18's targets against whatever the run measured; ``met`` None when not measured."""
    rows: list[dict] = []

    def add(name: str, value, limit, met_when) -> None:
        rows.append({"target": name, "value": value, "limit": limit,
                     "met": None if value is None else bool(met_when(value, limit))})

    at_most, at_least = (lambda v, lim: v <= lim), (lambda v, lim: v >= lim)
    add("trickle: Spark cores", _get(phases, "trickle", "trickle", "groups", SPARK_GROUP, "cores"),
        TARGET_TRICKLE_SPARK_CORES, at_most)
    add("freshness: Spark CPU ms per change", _get(phases, "freshness", "spark_cpu", "ms_per_change"),
        TARGET_MS_PER_CHANGE, at_most)
    for sink, limit in TARGET_P99_S.items():
        add(f"freshness p99 to {sink}, s", _get(phases, "freshness", "sinks", sink, "p99_s"), limit, at_most)
    pipeline = _get(phases, "backlog", "pipeline_changes_per_s")
    add("backlog: changes/s through every sink", pipeline, TARGET_BACKLOG_CHANGES_PER_S, at_least)
    add("backlog: pipeline / Debezium capture alone",
        _ratio(pipeline, _get(phases, "ceiling", "capture", "changes_per_s")), TARGET_RATIO_TO_CAPTURE_ALONE, at_least)
    held = _get(phases, "steps", "highest_held_changes_per_s")
    if held is None and _get(phases, "steps", "steps"):
        held = 0  # steps ran and none held: missed, not unmeasured
    add("steps: highest held step, changes/s", held, TARGET_STEP_CHANGES_PER_S, at_least)
    peaks = [p for p in (_get(f, "total_pss_max_bytes") for f in (_get(phases, "footprint", "loads") or {}).values())
             if p is not None]
    add("footprint: whole stack PSS under load, GiB", round(max(peaks) / 2**30, 2) if peaks else None,
        round(TARGET_RESIDENT_BYTES / 2**30, 2), at_most)
    return rows


# --- CPU by process tree ------------------------------------------------------------------

# /proc/stat fields that are this machine's own work: idle and iowait are not, steal is time the
# hypervisor gave to others, and guest time is already part of user.
BUSY_CPU_FIELDS = ("user", "nice", "system", "irq", "softirq")
SPARK_GROUP = "spark-driver"    # the stream's Spark process trees: driver JVM, Python driver, Python workers
SPARK_EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def busy_seconds(times: Mapping[str, float]) -> float:
    """The machine's busy CPU seconds from its cumulative times (psutil.cpu_times()._asdict())."""
    return sum(float(times.get(f, 0.0)) for f in BUSY_CPU_FIELDS)


def is_spark_process(cmdline: Sequence[str], application: str) -> bool:
    """A root of the Spark side of the stream: the spark-submit JVM running ``application`` or its
    Python driver (pipeline_driver.stream_driver_pids' rule), or an executor of a standalone cluster.
    Their process trees (Python workers included) are the Spark group."""
    if not cmdline:
        return False
    joined = " ".join(cmdline)
    if SPARK_EXECUTOR_CLASS in joined:
        return True
    return application in joined and ("SparkSubmit" in joined or "python" in cmdline[0])


def assign_groups(parents: Mapping[int, int], roots: Sequence[tuple[str, Iterable[int]]]) -> dict[int, str]:
    """pid -> group: each group is the process trees under its root pids (``parents``: pid -> ppid).
    Groups are claimed in order, so a tree inside another (the Spark stream under an Airflow
    worker) belongs to the group listed first and is not counted again."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    owner: dict[int, str] = {}
    for group, pids in roots:
        stack = [p for p in pids if p in parents and p not in owner]
        while stack:
            pid = stack.pop()
            if pid in owner:
                continue
            owner[pid] = group
            stack.extend(c for c in children.get(pid, ()) if c not in owner)
    return owner


def cpu_between(samples: Sequence[tuple[float, Mapping[str, float]]], t0: float, t1: float) -> dict[str, float]:
    """CPU seconds per key within [t0, t1] from samples of cumulative seconds ``(time, {key: s})``,
    each key's series interpolated (a key not yet seen counts as 0 until it appears)."""
    if not samples or t1 <= t0:
        return {}
    keys = sorted({k for _, values in samples for k in values})
    out = {}
    for key in keys:
        series = [(t, values.get(key, 0.0)) for t, values in samples]
        out[key] = max(0.0, value_at(series, t1) - value_at(series, t0))
    return out


def cpu_summary(cpu_seconds: Mapping[str, float], machine_busy_s: float | None, wall_s: float, cores: int) -> dict:
    """Cores used (CPU seconds / wall seconds) per group, by the whole machine, and by processes
    outside every group (the machine's busy time less the groups')."""
    if wall_s <= 0:
        return {"seconds": 0.0, "groups": {}, "machine_cores": None, "machine_busy_pct": None,
                "outside_groups_cores": None}
    groups = {name: {"cpu_s": round(s, 3), "cores": round(s / wall_s, 3)}
              for name, s in sorted(cpu_seconds.items(), key=lambda kv: -kv[1])}
    in_groups = sum(cpu_seconds.values())
    return {
        "seconds": round(wall_s, 2),
        "groups": groups,
        "groups_cores": round(in_groups / wall_s, 3),
        "machine_cores": None if machine_busy_s is None else round(machine_busy_s / wall_s, 3),
        "machine_busy_pct": (None if machine_busy_s is None or not cores
                             else round(100 * machine_busy_s / (wall_s * cores), 1)),
        "outside_groups_cores": None if machine_busy_s is None else round(max(0.0, machine_busy_s - in_groups) / wall_s, 3),
    }


def cpu_settled(windows: Sequence[float], abs_tolerance: float = 0.05, rel_tolerance: float = 0.25) -> bool:
    """The last two windows' cores agree (within ``abs_tolerance`` cores or ``rel_tolerance`` of
    the larger): a process tree past its start-up (JIT, query start, first batches)."""
    if len(windows) < 2:
        return False
    a, b = windows[-2], windows[-1]
    return abs(a - b) <= max(abs_tolerance, rel_tolerance * max(a, b))


def cpu_per_change(cpu_s: float | None, changes: int, wall_s: float, idle_cores: float | None = None,
                   complete: bool = True) -> dict:
    """CPU milliseconds per change over a window: ``cpu_s * 1000 / changes``; and, given the cores
    the same processes use idle, what the changes cost above that. ``complete`` False (the
    changes were not all applied within the window) leaves the per-change figures out."""
    cpu = cpu_s or 0.0
    per_change = complete and changes > 0 and cpu_s is not None
    out = {
        "cpu_s": None if cpu_s is None else round(cpu, 3),
        "seconds": round(wall_s, 2),
        "cores": round(cpu / wall_s, 3) if wall_s > 0 and cpu_s is not None else None,
        "changes": changes,
        "ms_per_change": round(cpu * 1000 / changes, 3) if per_change else None,
    }
    if idle_cores is not None:
        out["idle_cores"] = round(idle_cores, 3)
        out["ms_per_change_above_idle"] = (round((cpu - idle_cores * wall_s) * 1000 / changes, 3)
                                           if per_change else None)
    if not complete:
        out["incomplete"] = "the changes were not all applied within the window"
    return out


# --- ceilings and the headline ------------------------------------------------------------

CEILING_ID_END = 2_000_000_000     # the ceiling's synthetic rows take ids just below this
CEILING_POSITION_FLOOR = 10**15    # above any PostgreSQL LSN the local stack reaches


def ceiling_base_position(now_s: float, floor: int = CEILING_POSITION_FLOOR) -> int:
    """The first source position of the ceiling's synthetic changes: the wall clock in epoch
    microseconds, at least ``floor``. Above every real position, and above every earlier run's
    positions (a run uses fewer positions than microseconds pass between two runs), so a run's
    changes are never stale against the fences and tombstones a previous run left."""
    return max(floor, int(now_s * 1_000_000))


def ceiling_ids(changes: int, warmup: int, end: int = CEILING_ID_END) -> tuple[range, range]:
    """(ids of the measured changes, ids of the warm-up changes below them)."""
    if changes < 1 or warmup < 0:
        raise ValueError("the ceiling needs at least one change and a warm-up of zero or more")
    return range(end - changes, end), range(end - changes - warmup, end - changes)


def sum_stats(parts: Sequence[Mapping]) -> dict:
    """Field-wise sum of the sinks' stats (as dicts); a field that is not a number keeps its last value."""
    total: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                    isinstance(total.get(key, 0), (int, float)):
                total[key] = total.get(key, 0) + value
            else:
                total[key] = value
    return total


def sink_ceiling_figures(changes: int, wall_s: float, bench_cpu_s: float, service_cpu: Mapping[str, float],
                         machine_busy_s: float | None, cores: int) -> dict:
    """A sink's writer absorbing ``changes`` in this process: its rate, this process's CPU and each
    service's, in cores and in milliseconds per change."""
    def ms(s: float) -> float | None:
        return round(s * 1000 / changes, 4) if changes > 0 else None

    return {
        "changes": changes,
        "seconds": round(wall_s, 3),
        "changes_per_s": round(changes / wall_s, 1) if wall_s > 0 else None,
        "bench_cpu_s": round(bench_cpu_s, 3),
        "bench_cores": round(bench_cpu_s / wall_s, 3) if wall_s > 0 else None,
        "bench_cpu_ms_per_change": ms(bench_cpu_s),
        "services": {name: {"cpu_s": round(s, 3), "cores": round(s / wall_s, 3) if wall_s > 0 else None,
                            "ms_per_change": ms(s)}
                     for name, s in sorted(service_cpu.items(), key=lambda kv: -kv[1]) if s > 0},
        "machine_cores": (round(machine_busy_s / wall_s, 3) if machine_busy_s is not None and wall_s > 0 else None),
        "machine_busy_pct": (round(100 * machine_busy_s / (wall_s * cores), 1)
                             if machine_busy_s is not None and wall_s > 0 and cores else None),
    }


def _ratio(a, b, digits: int = 3):
    return round(a / b, digits) if a and b else None


def headline(phases: Mapping, sink_queries: Mapping[str, str]) -> dict | None:
    """The backlog's pipeline rate over Debezium's capture alone and over each sink's writer
    ceiling (same --changes when both phases ran together); also each sink query's own backlog
    rate over its writer's ceiling. ``sink_queries``: sink -> its stream query. None without either phase."""
    backlog, ceiling = phases.get("backlog"), phases.get("ceiling")
    if not backlog and not ceiling:
        return None
    pipeline = _get(backlog, "pipeline_changes_per_s")
    capture = _get(ceiling, "capture", "changes_per_s")
    out = {
        "pipeline_changes_per_s": pipeline,
        "backlog_changes": _get(backlog, "changes"),
        "ceiling_changes": _get(ceiling, "changes"),
        "capture_alone_changes_per_s": capture,
        "capture_alone_stream": _get(ceiling, "capture", "stream"),
        "pipeline_over_capture_alone": _ratio(pipeline, capture),
        "backlog_capture_changes_per_s": _get(backlog, "capture_changes_per_s"),
        "sinks": {},
    }
    for sink, figures in (_get(ceiling, "sinks") or {}).items():
        limit = _get(figures, "changes_per_s")
        query = sink_queries.get(sink)
        query_rate = _get(backlog, "queries", query, "changes_per_s") if query else None
        out["sinks"][sink] = {"ceiling_changes_per_s": limit, "pipeline_over_ceiling": _ratio(pipeline, limit),
                              "query": query, "query_changes_per_s": query_rate,
                              "query_over_ceiling": _ratio(query_rate, limit)}
    return out
