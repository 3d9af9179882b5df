"""The benchmark's phases: each writes its load, measures, and returns plain figures."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cdc_platform import names

from cdc_local.bench import load as loadgen
from cdc_local.bench import logic, measure


@dataclass
class Context:
    env: dict
    queries: tuple[str, ...]
    root: Path
    tombstones: bool
    seed: int
    sample_interval: float = 0.5
    drain_timeout: float = 1200.0
    tick_s: float = 0.01
    say: Callable[[str], None] = print
    footprint: bool = False
    footprints: dict[str, dict] = field(default_factory=dict)
    _writers: dict[str, loadgen.ChangeWriter] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP"]

    def writer(self, kind: str) -> loadgen.ChangeWriter:
        """One writer per kind of load: ``mix`` (inserts, updates, deletes, a few bad rows) or
        ``inserts`` (valid inserts only, for freshness), kept across phases and steps."""
        if kind not in self._writers:
            workload = (loadgen.Workload(self.seed) if kind == "mix" else
                        loadgen.Workload(self.seed + 1, update_share=0, delete_share=0, bad_share=0))
            self._writers[kind] = loadgen.ChangeWriter(self.env["PG_DSN"], workload)
        return self._writers[kind]

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def idle(self) -> bool:
        return measure.wait_idle(self.bootstrap, self.root, self.queries, self.drain_timeout, self.say)

    def start_footprint(self) -> measure.Footprint | None:
        return measure.Footprint() if self.footprint else None

    def keep_footprint(self, label: str, fp: measure.Footprint | None) -> None:
        if fp is None:
            return
        summary = fp.stop()
        self.footprints[label] = summary
        self.say(f"    footprint during {label}:")
        for line in measure.format_footprint(summary):
            self.say(line)


def _start_capture(ctx: Context) -> tuple[measure.Periodic, int]:
    sampler = measure.source_sampler(ctx.bootstrap, ctx.sample_interval)
    sampler.start()
    while len(sampler.samples) < 2:
        if sampler.errors:
            raise RuntimeError(f"cannot read the source topics' end offsets: {sampler.errors[-1]}")
        time.sleep(ctx.sample_interval / 2)
    return sampler, sampler.samples[0][1]


def _stop(*threads) -> None:
    for thread in threads:
        if isinstance(thread, measure.Footprint):
            thread.thread.stop()
        elif thread is not None:
            thread.stop()


def _load_progress(ctx: Context, label: str, lags: measure.Periodic | None = None):
    def progress(result: loadgen.LoadResult, behind: float) -> None:
        line = (f"    {label}: {result.changes:,}/{result.planned:,} changes written "
                f"({result.changes / max(time.time() - result.started, 1e-6):,.0f}/s)")
        if result.target_rate > 0:
            line += f", generator {behind:.2f}s behind schedule"
        if lags is not None and lags.latest():
            line += f"; behind: {measure.format_lags(lags.latest())}"
        ctx.say(line)
    return progress


# --- capture and backlog (one load serves both) -------------------------------------------

def capture_and_backlog(ctx: Context, changes: int, tx_size: int, pipeline: bool) -> tuple[dict, dict | None]:
    """``changes`` changes written as fast as PostgreSQL takes them; Debezium's rate into Kafka
    from the end offsets sampled meanwhile; with ``pipeline``, the time until each query caught up."""
    idle_before = ctx.idle()
    writer = ctx.writer("mix")
    sampler, baseline = _start_capture(ctx)
    fp = ctx.start_footprint() if pipeline else None
    try:
        ctx.say(f"    writing {changes:,} changes (inserts, updates, deletes) in transactions of {tx_size}")
        load = loadgen.run_open_loop(writer, 0, changes, max_batch=tx_size, progress=_load_progress(ctx, "backlog"))
        ctx.say(f"    written in {load.seconds:.1f}s ({load.achieved_rate():,.0f}/s); "
                "waiting for the capture to finish")
        expected = round(load.changes * logic.messages_per_change(load.changes, load.deletes, ctx.tombstones))
        settled = measure.wait_settled(sampler, expected, baseline, say=ctx.say)
    except BaseException:
        _stop(sampler, fp)
        raise
    sampler.stop()
    samples = [(t, v) for t, v in sampler.samples]
    span = logic.capture_span(samples)
    if span is None:
        _stop(fp)
        raise RuntimeError("the source topics' end offsets never moved: is the Debezium connector running?")
    origin, end, messages = span
    capture = {
        "load": load.as_dict(),
        "messages": int(messages),
        "messages_per_change": round(messages / load.changes, 4),
        "seconds": round(end - origin, 2),
        "changes_per_s": round(load.changes / (end - origin), 1),
        "messages_per_s": round(messages / (end - origin), 1),
        "captured_after_write_s": round(end - load.finished, 2),
        "settled": settled,
        "sample_interval_s": ctx.sample_interval,
        "samples": len(samples),
        "pipeline_idle_before": idle_before,
    }
    ctx.say(f"    capture: {load.changes:,} changes ({messages:,.0f} messages) into Kafka in {end - origin:.1f}s "
            f"= {capture['changes_per_s']:,.0f} changes/s")
    if not pipeline:
        return capture, None
    try:
        tracker = measure.track_catch_up(ctx.bootstrap, ctx.root, ctx.queries, origin, ctx.drain_timeout, ctx.say,
                                         label="backlog")
    finally:
        ctx.keep_footprint("backlog", fp)
    backlog = logic.backlog_summary(load.changes, origin, end, {q: tracker.done.get(q) for q in ctx.queries},
                                    load.finished - load.started)
    backlog["mix"] = {k: load.as_dict()[k] for k in ("inserts", "updates", "deletes")}
    backlog["end_offsets"] = tracker.ends
    for query, figures in backlog["queries"].items():
        rate = figures["changes_per_s"]
        ctx.say(f"    {query}: " + (f"caught up after {figures['seconds']}s"
                                    + (f" = {rate:,.0f} changes/s" if rate is not None else " (had nothing to do)")
                                    if figures["seconds"] is not None else "did not catch up"))
    ctx.say(f"    pipeline {backlog['pipeline_changes_per_s']} changes/s, "
            f"{backlog['ratio_to_capture']} x capture ({backlog['capture_changes_per_s']} changes/s)")
    return capture, backlog


# --- sustained steps ----------------------------------------------------------------------

def _rates(listed: list[float], growth: float, maximum: float):
    yield from listed
    rate = listed[-1] if listed else None
    while rate is not None:
        rate = logic.next_step_rate(rate, growth, maximum)
        if rate is not None:
            yield rate


def one_step(ctx: Context, rate: float, warmup_s: float, step_s: float, lag_interval: float,
             max_batch: int | None = None, label: str | None = None) -> dict:
    label = label or f"step {rate:,.0f}/s"
    writer = ctx.writer("mix")
    capture, _ = _start_capture(ctx)
    lags = measure.lag_sampler(ctx.bootstrap, ctx.root, ctx.queries, lag_interval)
    lags.start()
    fp = ctx.start_footprint()
    total = loadgen.planned_changes(rate, warmup_s + step_s)
    try:
        load = loadgen.run_open_loop(writer, rate, total, tick_s=ctx.tick_s,
                                     max_batch=max_batch or max(500, int(rate // 5)),
                                     progress=_load_progress(ctx, label, lags), progress_every_s=10)
    finally:
        lags.stop()
        capture.stop()
        ctx.keep_footprint(label, fp)
    t0, t1 = load.started + warmup_s, load.finished
    window = t1 - t0
    source_rate = logic.window_count(load.commits, t0, t1) / window if window > 0 else 0.0
    per_change = logic.messages_per_change(load.changes, load.deletes, ctx.tombstones)
    capture_msgs = logic.rate_between(capture.samples, t0, t1)
    queries = {}
    for query in ctx.queries:
        series = [(t, v[query]) for t, v in lags.samples if t0 <= t <= t1 and v.get(query) is not None]
        values = [v for _, v in series]
        split = logic.thirds(values)
        queries[query] = {
            "holds": logic.lag_holds(values, rate * per_change),
            "lag_first_third": None if split is None else round(split[0]),
            "lag_last_third": None if split is None else round(split[1]),
            "lag_max": max(values) if values else None,
            "lag_end": values[-1] if values else None,
            "lag_samples": [(round(t - t0, 1), v) for t, v in series],
        }
    kept = logic.kept_rate(rate, source_rate, load.max_behind_s)
    holds = None if not kept else all(q["holds"] is True for q in queries.values())
    return {
        "rate": rate,
        "warmup_s": warmup_s,
        "seconds": round(window, 1),
        "load": load.as_dict(),
        "source_changes_per_s": round(source_rate, 1),
        "generator_kept_rate": kept,
        "capture_changes_per_s": None if capture_msgs is None else round(capture_msgs / per_change, 1),
        "messages_per_change": round(per_change, 4),
        "queries": queries,
        "holds": holds,
        "sample_errors": (lags.errors + capture.errors)[:5] or None,
    }


def steps(ctx: Context, listed: list[float], warmup_s: float, step_s: float, growth: float, maximum: float,
          keep_going: bool, lag_interval: float) -> dict:
    results = []
    stopped = None
    every_step_held = True
    for rate in _rates(listed, growth, maximum):
        if rate not in listed and not every_step_held:
            break  # past the list only while every step held (--keep-going ran the rest of the list)
        if not ctx.idle():
            stopped = f"the pipeline did not catch up within {ctx.drain_timeout:.0f}s before the {rate:,.0f}/s step"
            break
        ctx.say(f"    step {rate:,.0f} changes/s: {warmup_s:.0f}s warm-up + {step_s:.0f}s measured")
        step = one_step(ctx, rate, warmup_s, step_s, lag_interval)
        results.append(step)
        verdict = {True: "held", False: "NOT held", None: "generator could not keep the rate"}[step["holds"]]
        ctx.say(f"    step {rate:,.0f}/s {verdict}: source {step['source_changes_per_s']:,.0f}/s, capture "
                f"{step['capture_changes_per_s']}/s; lag first/last third: " + ", ".join(
                    f"{q} {f['lag_first_third']}/{f['lag_last_third']}" for q, f in step["queries"].items()))
        if step["holds"] is None:
            stopped = (f"the generator could not keep {rate:,.0f} changes/s "
                       f"(achieved {step['source_changes_per_s']:,.0f})")
            break
        every_step_held = every_step_held and step["holds"] is True
        if step["holds"] is False and not keep_going:
            stopped = f"not every query held {rate:,.0f} changes/s"
            break
    drained = ctx.idle()
    return {"steps": results, "highest_held_changes_per_s": logic.highest_held(results), "stopped": stopped,
            "drained_after": drained}


# --- freshness ----------------------------------------------------------------------------

def freshness(ctx: Context, rate: float, seconds: float, window_s: float = 10.0) -> dict:
    """Inserts at a steady ``rate``; per row, commit (wall clock after COMMIT returned) to applied in each sink."""
    idle_before = ctx.idle()
    writer = ctx.writer("inserts")
    capture, baseline = _start_capture(ctx)
    try:
        load = loadgen.run_open_loop(writer, rate, loadgen.planned_changes(rate, seconds), tick_s=ctx.tick_s,
                                     max_batch=max(500, int(rate // 5)), record_rows=True,
                                     progress=_load_progress(ctx, f"freshness {rate:,.0f}/s"), progress_every_s=10)
        measure.wait_settled(capture, load.changes, baseline, say=ctx.say)
    finally:
        capture.stop()
    tracker = measure.track_catch_up(ctx.bootstrap, ctx.root, ctx.queries, load.started, ctx.drain_timeout,
                                     ctx.say, label="freshness drain")
    commits = load.row_commit
    row_ids = sorted(commits)
    ctx.say(f"    reading when each of {len(row_ids):,} rows was applied in each sink")
    sinks: dict[str, dict] = {}

    def figures(applied: dict[int, float], **extra) -> dict:
        points = [(commits[r], applied[r] - commits[r]) for r in row_ids if r in applied]
        return {**logic.distribution(v for _, v in points), "missing": len(row_ids) - len(points),
                f"p99_by_{window_s:.0f}s_of_commit_time": logic.windowed_percentile(points, window_s), **extra}

    try:
        sinks["cassandra"] = figures(measure.cassandra_applied(ctx.env, row_ids), applied_field="ingested_at")
    except Exception as exc:  # noqa: BLE001 - one sink's trouble does not lose the others' figures
        sinks["cassandra"] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        found, without = measure.redis_applied(ctx.env, row_ids)
        if not found and without:
            sinks["redis"] = {"error": f"the Redis row fences ({names.REDIS_ROW_PREFIX}<id>) have no "
                                       f"'{measure.REDIS_APPLIED_FIELD}' field: this Redis sink does not record "
                                       "when it applied a row, so freshness to Redis is not measured",
                              "fences_without_field": without}
        else:
            sinks["redis"] = figures(found, applied_field=f"{names.REDIS_ROW_PREFIX}<id> {measure.REDIS_APPLIED_FIELD}",
                                     fences_without_field=without)
    except Exception as exc:  # noqa: BLE001
        sinks["redis"] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        found, how = measure.rest_applied(ctx.env, row_ids, say=ctx.say)
        sinks["rest"] = figures(found, applied_field="received_at", read=how)
    except Exception as exc:  # noqa: BLE001
        sinks["rest"] = {"error": f"{type(exc).__name__}: {exc}"}
    for sink, f in sinks.items():
        if "error" in f:
            ctx.say(f"    {sink}: {f['error']}")
        elif f["count"]:
            ctx.say(f"    {sink}: p50 {f['p50_s']}s p95 {f['p95_s']}s p99 {f['p99_s']}s max {f['max_s']}s "
                    f"over {f['count']:,} events" + (f"; {f['missing']:,} not found" if f["missing"] else ""))
        else:
            ctx.say(f"    {sink}: none of the {len(row_ids):,} rows found")
    return {"rate": rate, "seconds": seconds, "load": load.as_dict(), "events": len(row_ids),
            "pipeline_idle_before": idle_before, "caught_up_seconds": tracker.seconds(), "sinks": sinks}
