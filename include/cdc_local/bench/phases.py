"""The benchmark's phases: each writes its load, measures, and returns plain figures."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
    cpu_interval: float = 1.0
    # The Spark side's cores with no load (the trickle phase's idle baseline), once measured.
    idle_spark_cores: float | None = None
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

    def settle(self) -> dict:
        """Until the Spark side is past its start-up (its idle cost is then what it costs idle)."""
        return measure.wait_spark_settled(say=self.say)

    def cpu(self) -> measure.CpuSampler:
        return measure.CpuSampler(self.cpu_interval).start()

    def spark_cpu(self, cpu: measure.CpuSampler, t0: float, t1: float, changes: int, complete: bool = True) -> dict:
        """The Spark side's CPU over [t0, t1] per change (and above its idle cost, when known)."""
        return logic.cpu_per_change(cpu.spark_seconds(t0, t1), changes, t1 - t0, self.idle_spark_cores, complete)

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


def _say_spark(ctx: Context, label: str, f: dict) -> None:
    line = (f"    {label}: Spark {f['cpu_s'] or 0:.1f} CPU s over {f['seconds']:.1f}s ({f['cores'] or 0:.2f} cores)")
    if f["ms_per_change"] is not None:
        line += f" = {f['ms_per_change']:.2f} ms per change ({f['changes']:,} changes)"
        if f.get("ms_per_change_above_idle") is not None:
            line += f", {f['ms_per_change_above_idle']:.2f} above idle"
    else:
        line += f"; no per-change figure: {f.get('incomplete', 'no changes')}"
    ctx.say(line)


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

def capture_and_backlog(ctx: Context, changes: int, tx_size: int, pipeline: bool,
                        wait_idle: bool = True) -> tuple[dict, dict | None]:
    """``changes`` changes written as fast as PostgreSQL takes them; Debezium's rate into Kafka
    from the end offsets sampled meanwhile, and who spent CPU on it; with ``pipeline``, the time
    until each query caught up and the Spark side's CPU per change meanwhile."""
    idle_before = ctx.idle() if wait_idle else None
    writer = ctx.writer("mix")
    sampler, baseline = _start_capture(ctx)
    cpu = ctx.cpu()
    fp = ctx.start_footprint() if pipeline else None
    try:
        ctx.say(f"    writing {changes:,} changes (inserts, updates, deletes) in transactions of {tx_size}")
        load = loadgen.run_open_loop(writer, 0, changes, max_batch=tx_size, progress=_load_progress(ctx, "backlog"))
        ctx.say(f"    written in {load.seconds:.1f}s ({load.achieved_rate():,.0f}/s); "
                "waiting for the capture to finish")
        expected = round(load.changes * logic.messages_per_change(load.changes, load.deletes, ctx.tombstones))
        settled = measure.wait_settled(sampler, expected, baseline, say=ctx.say)
    except BaseException:
        _stop(sampler, fp, cpu)
        raise
    sampler.stop()
    samples = [(t, v) for t, v in sampler.samples]
    span = logic.capture_span(samples)
    if span is None:
        _stop(fp, cpu)
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
    groups, machine = cpu.between(origin, end)
    capture["cpu"] = logic.cpu_summary(groups, machine, end - origin, os.cpu_count() or 1)
    ctx.say(f"    capture: {load.changes:,} changes ({messages:,.0f} messages) into Kafka in {end - origin:.1f}s "
            f"= {capture['changes_per_s']:,.0f} changes/s; cores meanwhile: " + ", ".join(
                f"{g} {f['cores']:.2f}" for g, f in list(capture["cpu"]["groups"].items())[:5])
            + f"; machine {capture['cpu']['machine_cores']}")
    if not pipeline:
        cpu.stop()
        return capture, None
    try:
        tracker = measure.track_catch_up(ctx.bootstrap, ctx.root, ctx.queries, origin, ctx.drain_timeout, ctx.say,
                                         label="backlog")
    finally:
        cpu.stop()
        ctx.keep_footprint("backlog", fp)
    backlog = logic.backlog_summary(load.changes, origin, end, {q: tracker.done.get(q) for q in ctx.queries},
                                    load.finished - load.started)
    caught_up = not tracker.pending()
    applied_at = max(tracker.done.values(), default=time.time()) if caught_up else time.time()
    backlog["spark_cpu"] = ctx.spark_cpu(cpu, origin, applied_at, load.changes, complete=caught_up)
    backlog["mix"] = {k: load.as_dict()[k] for k in ("inserts", "updates", "deletes")}
    backlog["end_offsets"] = tracker.ends
    for query, figures in backlog["queries"].items():
        rate = figures["changes_per_s"]
        ctx.say(f"    {query}: " + (f"caught up after {figures['seconds']}s"
                                    + (f" = {rate:,.0f} changes/s" if rate is not None else " (had nothing to do)")
                                    if figures["seconds"] is not None else "did not catch up"))
    ctx.say(f"    pipeline {backlog['pipeline_changes_per_s']} changes/s, "
            f"{backlog['ratio_to_capture']} x capture ({backlog['capture_changes_per_s']} changes/s)")
    _say_spark(ctx, "backlog", backlog["spark_cpu"])
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
    cpu = ctx.cpu()
    total = loadgen.planned_changes(rate, warmup_s + step_s)
    try:
        load = loadgen.run_open_loop(writer, rate, total, tick_s=ctx.tick_s,
                                     max_batch=max_batch or max(500, int(rate // 5)),
                                     progress=_load_progress(ctx, label, lags), progress_every_s=10)
    finally:
        cpu.stop()
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
    # Over the measured window, per change written in it: what Spark applied when the step held.
    spark_cpu = ctx.spark_cpu(cpu, t0, t1, logic.window_count(load.commits, t0, t1), complete=holds is True)
    spark_cpu["basis"] = "changes committed in the measured window (all applied only when the step held)"
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
        "spark_cpu": spark_cpu,
        "sample_errors": (lags.errors + capture.errors + cpu.errors)[:5] or None,
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
        _say_spark(ctx, f"step {rate:,.0f}/s", step["spark_cpu"])
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
    cpu = ctx.cpu()
    try:
        load = loadgen.run_open_loop(writer, rate, loadgen.planned_changes(rate, seconds), tick_s=ctx.tick_s,
                                     max_batch=max(500, int(rate // 5)), record_rows=True,
                                     progress=_load_progress(ctx, f"freshness {rate:,.0f}/s"), progress_every_s=10)
        measure.wait_settled(capture, load.changes, baseline, say=ctx.say)
    except BaseException:
        cpu.stop()
        raise
    finally:
        capture.stop()
    try:
        tracker = measure.track_catch_up(ctx.bootstrap, ctx.root, ctx.queries, load.started, ctx.drain_timeout,
                                         ctx.say, label="freshness drain")
    finally:
        cpu.stop()
    caught_up = not tracker.pending()
    applied_at = max(tracker.done.values(), default=time.time()) if caught_up else time.time()
    spark_cpu = ctx.spark_cpu(cpu, load.started, applied_at, load.changes, complete=caught_up)
    _say_spark(ctx, "freshness", spark_cpu)
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
            "pipeline_idle_before": idle_before, "caught_up_seconds": tracker.seconds(), "spark_cpu": spark_cpu,
            "sinks": sinks}


# --- trickle: what a light steady load costs, and the idle baseline ------------------------

def trickle(ctx: Context, rate: float, seconds: float, idle_s: float) -> dict:
    """``idle_s`` seconds without load (the idle baseline), then the backlog's mix at a steady
    ``rate`` for ``seconds``: cores used per group (the Spark side's process tree, each stack
    service, this bench) and by the machine over each window, and the Spark side's CPU per change
    (also above its idle cost, which later phases then report too)."""
    idle_before = ctx.idle()
    settle = ctx.settle()
    writer = ctx.writer("mix")
    cores = os.cpu_count() or 1
    cpu = ctx.cpu()
    try:
        ctx.say(f"    idle baseline: {idle_s:.0f}s without load")
        idle_from = time.time()
        time.sleep(idle_s)
        idle_to = time.time()
        ctx.say(f"    trickle: {rate:,.0f} changes/s for {seconds:.0f}s")
        load = loadgen.run_open_loop(writer, rate, loadgen.planned_changes(rate, seconds), tick_s=ctx.tick_s,
                                     max_batch=500, progress=_load_progress(ctx, f"trickle {rate:,.0f}/s"),
                                     progress_every_s=10)
    finally:
        cpu.stop()
    idle = logic.cpu_summary(*cpu.between(idle_from, idle_to), idle_to - idle_from, cores)
    busy = logic.cpu_summary(*cpu.between(load.started, load.finished), load.seconds, cores)
    ctx.idle_spark_cores = (idle["groups"].get(measure.SPARK_GROUP) or {}).get("cores", 0.0)
    spark_cpu = ctx.spark_cpu(cpu, load.started, load.finished, load.changes)
    tracker = measure.track_catch_up(ctx.bootstrap, ctx.root, ctx.queries, load.finished, ctx.drain_timeout,
                                     ctx.say, label="trickle drain")
    for line in measure.format_cpu({"idle": idle, f"{rate:,.0f}/s": busy}, cores):
        ctx.say(line)
    _say_spark(ctx, "trickle", spark_cpu)
    return {"rate": rate, "seconds": seconds, "idle_seconds": round(idle_to - idle_from, 2), "load": load.as_dict(),
            "pipeline_idle_before": idle_before, "spark_settle": settle, "idle": idle, "trickle": busy,
            "spark_cpu": spark_cpu,
            "caught_up_after_last_write_s": tracker.seconds(), "sample_errors": cpu.errors[:5] or None}


# --- ceiling: Debezium alone and each sink's writer alone -----------------------------------

def ceiling(ctx: Context, out: dict, changes: int, tx_size: int, sinks: list[str], stream_mode: str,
            batch: int, warmup: int = 20) -> None:
    """The limits beside the pipeline, for ``changes`` changes; fills ``out`` as it goes.

    1. Debezium's capture alone: with ``stream_mode`` "stop" the stream is stopped first (as a
       user does: pause cdc_stream, mark its task failed, wait for the driver to exit) and
       restarted at the end; "running" measures with the stream running and says so. A stream
       that was not running when the phase began is left as it was.
    2. Each sink's writer (cdc_stream.<sink>_sink.write_changes) absorbing as many synthetic
       changes in this process, the stream still stopped; then deletes undo what it wrote."""
    from cdc_local import pipeline_driver

    out.update(changes=changes, sinks={}, stream_mode=stream_mode)
    ids, warm_ids = logic.ceiling_ids(changes, warmup)
    highest = measure.max_source_event_id(ctx.env)
    if highest >= warm_ids.start:
        raise RuntimeError(f"PostgreSQL's event ids reach {highest:,}: the ceiling's synthetic ids "
                           f"{warm_ids.start:,}..{ids.stop - 1:,} would collide; use fewer --changes")
    started = time.time()
    out["pipeline_idle_before"] = ctx.idle()
    client = pipeline_driver.airflow_client(ctx.env)
    running = bool(pipeline_driver.stream_driver_pids())
    # Only a driver that cdc_stream's task runs can be stopped (and restarted) through Airflow.
    task_state = pipeline_driver.stream_task_state(client) if running else None
    stopped_here = False
    try:
        if not running:
            state = "stopped (no Spark driver ran when the phase began)"
        elif stream_mode == "stop" and task_state != "running":
            state = (f"running (a stream driver runs outside cdc_stream, whose task is {task_state}: "
                     "the bench cannot stop it)")
        elif stream_mode == "stop":
            ctx.say("    stopping the stream: pause cdc_stream, mark its task failed, wait for the driver to exit")
            stopped_here = True
            t = time.time()
            pipeline_driver.stop_stream(client, ctx.env)
            out["stream_stop_seconds"] = round(time.time() - t, 1)
            state = "stopped by the bench"
        else:
            state = "running (--ceiling-stream running: Spark competes for the CPU)"
        out["stream"] = state
        ctx.say(f"    Debezium's capture alone, stream {state}: {changes:,} changes as fast as PostgreSQL takes them")
        capture, _ = capture_and_backlog(ctx, changes, tx_size, pipeline=False, wait_idle=False)
        capture["stream"] = state
        out["capture"] = capture
        if sinks:
            _sink_ceilings(ctx, out, sinks, ids, warm_ids, batch)
    finally:
        if stopped_here:
            _restart_stream(ctx, out, client)
        out["seconds"] = round(time.time() - started, 1)


def _restart_stream(ctx: Context, out: dict, client) -> None:
    from cdc_local import pipeline_driver

    ctx.say("    restarting the stream (unpause cdc_stream)")
    t = time.time()
    try:
        pipeline_driver.start_stream(client, ctx.env, timeout=600, log=ctx.say)
    except Exception as exc:  # noqa: BLE001 - said loudly; the figures so far are kept
        out["stream_restart_error"] = f"{type(exc).__name__}: {exc}"
        ctx.say(f"    WARNING: the stream did not come back ({exc}); unpause cdc_stream in the Airflow UI "
                "(or run `make bench` again: it starts the stream when no driver runs)")
        return
    out["stream_restart_seconds"] = round(time.time() - t, 1)
    ctx.say(f"    stream running again after {out['stream_restart_seconds']}s; letting it apply the captured changes")
    t = time.time()
    out["drained_after_restart"] = ctx.idle()
    out["drain_seconds"] = round(time.time() - t, 1)


def _event_time_until(ctx: Context) -> datetime:
    """The latest event time the synthetic changes may carry: now, or engagement_10m's event-time
    clock if it is behind now, so the ceiling never moves that clock (it never moves back, and
    the real buckets it passed would fall out of the window)."""
    until = datetime.now(timezone.utc)
    try:
        clock_ms = measure.redis_event_clock_ms(ctx.env)
    except Exception:  # noqa: BLE001 - Redis unreachable: its sink fails on its own
        clock_ms = None
    if clock_ms is not None:
        until = min(until, datetime.fromtimestamp(clock_ms / 1000, timezone.utc))
    return until.replace(tzinfo=None)


def _sink_ceilings(ctx: Context, out: dict, sinks: list[str], ids: range, warm_ids: range, batch: int) -> None:
    from cdc_local.bench import ceiling as sink_ceiling

    cores = os.cpu_count() or 1
    settings = sink_ceiling.sink_settings(ctx.env)
    workload = ctx.writer("mix").workload     # the backlog's contents (in PostgreSQL) and users
    until = _event_time_until(ctx)
    base = logic.ceiling_base_position(time.time())
    source_ts_ms = int(time.time() * 1000)
    load = loadgen.sink_changes(ids, workload.catalogue, workload.users, base_position=base, now=until,
                                source_ts_ms=source_ts_ms, seed=ctx.seed + 2)
    warm = loadgen.sink_changes(warm_ids, workload.catalogue, workload.users, base_position=base, now=until,
                                source_ts_ms=source_ts_ms, seed=ctx.seed + 3)
    out["synthetic"] = {**load.as_dict(), "ids": [ids.start, ids.stop - 1], "warmup_ids": [warm_ids.start, warm_ids.stop - 1],
                        "first_position": base, "event_ts_until": until.isoformat() + "Z",
                        "batch": batch, "contents": len(workload.catalogue)}
    ctx.say(f"    sinks' writers alone: {len(load.changes):,} synthetic changes ({load.inserts:,} inserts, "
            f"{load.updates:,} updates, {load.deletes:,} deletes) for ids {ids.start:,}..{ids.stop - 1:,}, "
            f"positions from {base:,}")
    for sink in sinks:
        try:
            out["sinks"][sink] = _one_sink(ctx, sink, sink_ceiling, load, warm, settings, batch, cores,
                                           list(warm_ids) + list(ids))
        except Exception as exc:  # noqa: BLE001 - one sink's trouble does not lose the others' figures
            out["sinks"][sink] = {"error": f"{type(exc).__name__}: {exc}"}
            ctx.say(f"    {sink}: failed: {type(exc).__name__}: {exc}")


def _one_sink(ctx: Context, sink: str, sink_ceiling, load: loadgen.SinkLoad, warm: loadgen.SinkLoad, settings,
              batch: int, cores: int, all_ids: list[int]) -> dict:
    write = sink_ceiling.writer(sink)
    undo = sink in sink_ceiling.UNDOABLE
    before = max_position_before = None
    if sink == "redis":
        before = measure.redis_snapshot(ctx.env)
        max_position_before = measure.redis_max_position(ctx.env)
    try:
        # Warm-up, untimed: connect, prepare statements, load scripts (as a running executor has).
        sink_ceiling.write_all(write, warm.changes, settings, batch)
        if undo:
            sink_ceiling.write_all(write, warm.cleanup, settings, batch)
        figures = sink_ceiling.measure_writer(sink, write, load.changes, settings, batch, cores)
    except BaseException:
        if undo:  # some of the changes may have been applied: delete every row they touch
            last = (load.cleanup or load.changes)[-1]["position"]
            ctx.say(f"    {sink}: failed part-way; deleting every row the ceiling may have written")
            sink_ceiling.write_all(write, loadgen.delete_every_row(warm.changes + load.changes, last + 1),
                                   settings, batch)
        raise
    service = figures["service"]
    own = figures["services"].get(service) or {}
    ctx.say(f"    {sink}: {figures['changes']:,} changes in {figures['seconds']:.2f}s = "
            f"{figures['changes_per_s']:,.0f} changes/s; this process {figures['bench_cores']:.2f} cores "
            f"({figures['bench_cpu_ms_per_change']:.3f} ms/change), {service} {own.get('cores') or 0:.2f} cores "
            f"({own.get('ms_per_change') or 0:.3f} ms/change); machine {figures['machine_cores']} cores")
    if not undo:
        figures["left_at_service"] = len(warm.changes) + len(load.changes)
        figures["cleanup"] = (f"none: the REST service keeps every event it received; ids {all_ids[0]:,}.."
                              f"{all_ids[-1]:,} ({figures['left_at_service']:,} events) stay there")
        ctx.say(f"    {sink}: {figures['cleanup']}")
        return figures
    t = time.time()
    cleanup = {"deletes": len(load.cleanup), "stats": sink_ceiling.write_all(write, load.cleanup, settings, batch)}
    cleanup["seconds"] = round(time.time() - t, 2)
    if sink == "cassandra":
        cleanup["rows_left"] = measure.cassandra_rows_left(ctx.env, all_ids)
        ctx.say(f"    {sink}: cleanup deleted {len(load.cleanup):,} live rows; "
                f"{cleanup['rows_left']:,} of the ceiling's rows left")
    if sink == "redis":
        from cdc_platform.aggregates import diff

        now_max = measure.redis_max_position(ctx.env)
        if now_max is not None and int(now_max) >= load.changes[0]["position"]:
            cleanup["max_position_restored"] = measure.redis_restore_max_position(ctx.env, now_max, max_position_before)
        drift = diff(before, measure.redis_snapshot(ctx.env), tolerance=1e-6)
        cleanup["aggregates_as_before"] = drift.is_zero
        cleanup["drift"] = {name: d for name, d in drift.summary().items()
                            if d["missing"] or d["extra"] or d["mismatched"] or d["max_abs_error"]}
        ctx.say(f"    {sink}: cleanup deleted {len(load.cleanup):,} live rows; aggregates "
                + ("as before the ceiling" if drift.is_zero else f"DIFFER from before: {cleanup['drift']}"))
    figures["cleanup"] = cleanup
    return figures
