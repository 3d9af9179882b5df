"""`make bench`: argument parsing, the run's header, the JSON file and the closing summary."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from cdc_platform import names

import cdc_local.bench as package
from cdc_local.bench import logic

# In the order they run: trickle first (its idle baseline serves the later phases' Spark CPU
# figures), ceiling last (it stops and restarts the stream).
PHASES = ("trickle", "capture", "backlog", "steps", "freshness", "ceiling", "footprint")
SINKS = tuple(names.STREAM_SINKS)
CEILING_STREAM_MODES = ("stop", "running")
REPO_ROOT = Path(__file__).resolve().parents[3]
SINK_QUERIES = {sink: names.sink_query(sink) for sink in SINKS}


def parse_phases(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    if chosen == ["all"]:
        return list(PHASES)
    unknown = [p for p in chosen if p not in PHASES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown phase(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(PHASES)} or all")
    return [p for p in PHASES if p in chosen]


def parse_sinks(text: str) -> list[str]:
    """'rest,cassandra' -> ['cassandra', 'rest'] (the stream's order); 'all' or 'none'."""
    chosen = [p.strip().lower() for p in text.split(",") if p.strip()]
    if chosen == ["all"]:
        return list(SINKS)
    if chosen == ["none"]:
        return []
    unknown = [p for p in chosen if p not in SINKS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown sink(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(SINKS)}, all or none")
    return [s for s in SINKS if s in chosen]


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value
    return parse


def parse_rates(text: str) -> list[float]:
    """'500,1k,2k,5000' -> [500, 1000, 2000, 5000] (ascending, no duplicates)."""
    rates = set()
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1000 if part.endswith("k") else 1
        try:
            value = float(part.rstrip("k")) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a rate: {part!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"rates must be positive: {part!r}")
        rates.add(int(value) if value.is_integer() else value)
    if not rates:
        raise argparse.ArgumentTypeError("no rates given")
    return sorted(rates)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make bench ARGS=...", description=package.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phases", type=parse_phases, default=list(PHASES),
                   help=f"comma-separated, from {','.join(PHASES)} (default: all)")
    g = p.add_argument_group("trickle")
    g.add_argument("--trickle-rate", type=positive(float), default=20, help="changes/s of the steady load (default 20)")
    g.add_argument("--trickle-seconds", type=positive(float), default=60, help="seconds of the steady load (default 60)")
    g.add_argument("--idle-seconds", type=positive(float), default=10,
                   help="seconds of the idle baseline before it (default 10)")
    g = p.add_argument_group("capture, backlog and ceiling")
    g.add_argument("--changes", type=positive(int), default=100_000,
                   help="changes in the backlog load and in the ceiling (default 100000)")
    g.add_argument("--tx-size", type=int, default=500, help="changes per transaction of the backlog load (default 500)")
    g.add_argument("--sample-interval", type=float, default=0.5,
                   help="seconds between end-offset samples of the source topics (default 0.5)")
    g = p.add_argument_group("sustained steps")
    g.add_argument("--steps", type=parse_rates, default=[500, 1000, 2000, 3000, 5000],
                   help="changes/s of the listed steps (default 500,1000,2000,3000,5000; '2k' works)")
    g.add_argument("--step-growth", type=float, default=1.5,
                   help="after the list, raise the rate by this factor while every step held (default 1.5; 0: no)")
    g.add_argument("--max-step", type=float, default=50_000, help="highest rate the growth goes to (default 50000)")
    g.add_argument("--step-seconds", type=float, default=120, help="measured seconds per step (default 120)")
    g.add_argument("--warmup", type=float, default=15, help="seconds of each step before measuring (default 15)")
    g.add_argument("--lag-interval", type=float, default=3, help="seconds between lag samples (default 3)")
    g.add_argument("--keep-going", action="store_true", help="run every listed step even after one is not held")
    g = p.add_argument_group("ceiling")
    g.add_argument("--ceiling-sinks", type=parse_sinks, default=list(SINKS),
                   help=f"sinks whose writer is measured alone, from {','.join(SINKS)}, all or none (default all; "
                        "the REST service keeps the events it is sent)")
    g.add_argument("--ceiling-stream", choices=CEILING_STREAM_MODES, default="stop",
                   help="stop: stop the stream for Debezium's capture alone and the sinks' writers, restart it "
                        "after (default); running: measure with the stream running (and say so)")
    g.add_argument("--ceiling-batch", type=int, default=50_000,
                   help="changes per write_changes call (default 50000, the stream's max offsets per trigger; 0: one call)")
    g = p.add_argument_group("freshness")
    g.add_argument("--freshness-rate", type=float, default=1000, help="inserts/s (default 1000)")
    g.add_argument("--freshness-seconds", type=float, default=60, help="seconds of load (default 60)")
    g = p.add_argument_group("footprint (only when it runs without backlog and steps)")
    g.add_argument("--footprint-rate", type=float, default=2000, help="changes/s of its own load (default 2000)")
    g.add_argument("--footprint-seconds", type=float, default=60, help="seconds of its own load (default 60)")
    g = p.add_argument_group("general")
    g.add_argument("--seed", type=int, default=99, help="seed of the generated rows (default 99)")
    g.add_argument("--cpu-interval", type=positive(float), default=1.0,
                   help="seconds between CPU samples of the process trees (default 1)")
    g.add_argument("--tick-ms", type=float, default=10,
                   help="shortest interval between the generator's transactions (default 10)")
    g.add_argument("--drain-timeout", type=float, default=1200,
                   help="seconds to wait for the stream to catch up, per wait (default 1200)")
    g.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results",
                   help="directory of the JSON results (default bench/results)")
    g.add_argument("--no-start-stream", action="store_true",
                   help="do not start the cdc_stream DAG when no Spark driver runs")
    return p


def git_revision(root: Path = REPO_ROOT) -> tuple[str | None, bool | None]:
    """HEAD's commit and whether the work tree has changes; (None, None) outside a git checkout."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=30)
        return rev.stdout.strip(), (bool(dirty.stdout.strip()) if dirty.returncode == 0 else None)
    except (OSError, subprocess.SubprocessError):
        return None, None


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def header(argv: list[str], args: argparse.Namespace) -> dict:
    revision, dirty = git_revision()
    memory = memory_bytes()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_revision": revision,
        "git_dirty": dirty,
        "machine": {"cores": os.cpu_count(), "memory_bytes": memory,
                    "memory_gib": None if memory is None else round(memory / 2**30, 1)},
        "command": "make bench" + (f" ARGS={shlex.quote(' '.join(argv))}" if argv else ""),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def _spark(f: dict | None) -> str:
    """' Spark 1.23 ms/change' (and above idle) from a phase's spark_cpu figures, or ''."""
    if not f or f.get("ms_per_change") is None:
        return ""
    text = f"Spark {f['ms_per_change']:.2f} ms/change"
    if f.get("ms_per_change_above_idle") is not None:
        text += f" ({f['ms_per_change_above_idle']:.2f} above idle)"
    return text


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def headline_lines(h: dict | None) -> list[str]:
    if not h:
        return []
    stream = h.get("capture_alone_stream") or "?"
    lines = [f"headline    pipeline (backlog) {_rate(h['pipeline_changes_per_s'])} changes/s / Debezium capture alone "
             f"{_rate(h['capture_alone_changes_per_s'])} changes/s (stream {stream.split(' (')[0]}) = "
             f"{h['pipeline_over_capture_alone'] if h['pipeline_over_capture_alone'] is not None else '-'}"]
    for sink, f in h["sinks"].items():
        lines.append(f"headline    pipeline (backlog) {_rate(h['pipeline_changes_per_s'])} / {sink} writer ceiling "
                     f"{_rate(f['ceiling_changes_per_s'])} changes/s = "
                     f"{f['pipeline_over_ceiling'] if f['pipeline_over_ceiling'] is not None else '-'}; "
                     f"its query {_rate(f['query_changes_per_s'])} / ceiling = "
                     f"{f['query_over_ceiling'] if f['query_over_ceiling'] is not None else '-'}")
    if h.get("backlog_changes") and h.get("ceiling_changes") and h["backlog_changes"] != h["ceiling_changes"]:
        lines.append(f"headline    note: backlog of {h['backlog_changes']:,} changes, ceiling of {h['ceiling_changes']:,}")
    return lines


def summary_lines(result: dict) -> list[str]:
    phases = result.get("phases", {})
    lines = []
    trickle = phases.get("trickle")
    if trickle:
        idle, busy, f = trickle["idle"], trickle["trickle"], trickle["spark_cpu"]
        spark = logic.SPARK_GROUP
        lines.append(f"trickle     {trickle['rate']:,.0f} changes/s for {trickle['seconds']:.0f}s: Spark "
                     f"{(busy['groups'].get(spark) or {}).get('cores', 0):.2f} cores, machine {busy['machine_cores']} "
                     f"cores; idle: Spark {(idle['groups'].get(spark) or {}).get('cores', 0):.2f} cores, "
                     f"machine {idle['machine_cores']} cores; {_spark(f) or 'Spark ms/change not measured'}")
    capture = phases.get("capture")
    if capture:
        lines.append(f"capture     {capture['changes_per_s']:,.0f} changes/s into Kafka "
                     f"({capture['load']['changes']:,} changes in {capture['seconds']}s)")
    backlog = phases.get("backlog")
    if backlog:
        per_query = ", ".join(f"{q} {f['changes_per_s']:,.0f}/s" if f["changes_per_s"] else f"{q} -"
                              for q, f in backlog["queries"].items())
        spark = _spark(backlog.get("spark_cpu"))
        lines.append(f"backlog     {backlog['changes']:,} changes: {per_query}; pipeline "
                     f"{backlog['pipeline_changes_per_s']} changes/s = {backlog['ratio_to_capture']} x capture"
                     + (f"; {spark}" if spark else ""))
    steps = phases.get("steps")
    if steps:
        word = {True: "held", False: "not held", None: "generator-limited"}
        verdicts = ", ".join(f"{s['rate']:,.0f} {word[s['holds']]}"
                             + (f" ({_spark(s.get('spark_cpu'))})" if _spark(s.get("spark_cpu")) else "")
                             for s in steps["steps"])
        lines.append(f"steps       {verdicts}; highest held {steps['highest_held_changes_per_s'] or 'none'} changes/s")
    fresh = phases.get("freshness")
    if fresh:
        for sink, f in fresh["sinks"].items():
            text = f.get("error") or (f"p50 {f['p50_s']}s p95 {f['p95_s']}s p99 {f['p99_s']}s max {f['max_s']}s "
                                      f"({f['count']:,} events, {f['missing']:,} missing)" if f.get("count")
                                      else "no event found")
            lines.append(f"freshness   {sink:<9} {text}")
        if _spark(fresh.get("spark_cpu")):
            lines.append(f"freshness   {_spark(fresh['spark_cpu'])}")
    ceiling = phases.get("ceiling")
    if ceiling:
        cap = ceiling.get("capture")
        if cap:
            lines.append(f"ceiling     Debezium capture alone {cap['changes_per_s']:,.0f} changes/s "
                         f"({cap['load']['changes']:,} changes; stream {cap.get('stream')})")
        for sink, f in ceiling.get("sinks", {}).items():
            if "error" in f:
                lines.append(f"ceiling     {sink:<9} {f['error']}")
                continue
            own = f["services"].get(f.get("service")) or {}
            lines.append(f"ceiling     {sink:<9} writer alone {f['changes_per_s']:,.0f} changes/s; bench "
                         f"{f['bench_cpu_ms_per_change']:.3f} ms/change, {f.get('service')} "
                         f"{own.get('ms_per_change') or 0:.3f} ms/change")
        if ceiling.get("stream_restart_error"):
            lines.append(f"ceiling     WARNING: the stream did not restart: {ceiling['stream_restart_error']}")
    footprint = phases.get("footprint")
    if footprint:
        for label, f in footprint["loads"].items():
            top = sorted(f["groups"].items(), key=lambda kv: -(kv[1]["cpu_cores"] or 0))[:4]
            lines.append(f"footprint   {label}: resident {f['total_pss_max_mib']} MiB, machine busy "
                         f"{f['machine_busy_pct']}%; top CPU " + ", ".join(
                             f"{n} {g['cpu_share_pct']}%" for n, g in top))
    for t in result.get("targets", []):
        mark = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"target      {t['target']}: {t['value']} (target {t['limit']}) {mark}")
    return lines + headline_lines(result.get("headline"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    from cdc_local.bench import measure, phases
    from cdc_local.stack import envfile
    from cdc_local.stack.config import StackConfig

    env = envfile.read_or_exit(StackConfig.load(), "run `make demo` first")
    say = lambda line: print(line, flush=True)  # noqa: E731
    result = header(argv, args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"

    def save() -> None:
        result["targets"] = logic.evaluate_targets(result.get("phases", {}))
        result["headline"] = logic.headline(result.get("phases", {}), SINK_QUERIES)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")

    chosen = args.phases
    say(f"==> benchmark: {', '.join(chosen)} on {os.cpu_count()} cores; results to {path}")
    from cdc_local import pipeline_driver

    if not pipeline_driver.stream_driver_pids():
        if args.no_start_stream:
            say("    warning: no Spark driver is running; the stream queries will not catch up")
        else:
            say("    starting the stream (cdc_stream) through Airflow")
            pipeline_driver.start_stream(pipeline_driver.airflow_client(env), env, log=say)
            # Its start-up (JIT, queries starting) would count as the first phase's Spark CPU.
            result["stream_started_settle"] = measure.wait_spark_settled(say=say)
    queries = measure.stream_queries()
    tombstones = measure.tombstones_enabled(env)
    result.update(stream_queries=list(queries), tombstones_on_delete=tombstones, phases={})
    ctx = phases.Context(env=env, queries=queries, root=measure.checkpoint_root(env), tombstones=tombstones,
                         seed=args.seed, sample_interval=args.sample_interval, drain_timeout=args.drain_timeout,
                         tick_s=args.tick_ms / 1000, say=say, footprint="footprint" in chosen,
                         cpu_interval=args.cpu_interval)
    out = result["phases"]
    started = time.time()

    def run(name: str, title: str, fn) -> None:
        """One phase; an error is recorded and the next phase still runs."""
        say(f"==> {title}")
        try:
            fn()
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could measure
            out.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
            say(f"    {name} failed: {type(exc).__name__}: {exc}")
        save()

    def capture_backlog() -> None:
        capture, backlog = phases.capture_and_backlog(ctx, args.changes, args.tx_size, "backlog" in chosen)
        out["capture"] = capture
        if backlog is not None:
            out["backlog"] = backlog

    def steps() -> None:
        out["steps"] = phases.steps(ctx, args.steps, args.warmup, args.step_seconds, args.step_growth,
                                    args.max_step, args.keep_going, args.lag_interval)

    def footprint_load() -> None:
        ctx.idle()
        out["footprint_load"] = phases.one_step(ctx, args.footprint_rate, 10, args.footprint_seconds,
                                                args.lag_interval, label=f"steady {args.footprint_rate:,.0f}/s")

    def trickle() -> None:
        out["trickle"] = phases.trickle(ctx, args.trickle_rate, args.trickle_seconds, args.idle_seconds)

    def ceiling() -> None:
        ctx.footprint = False
        out["ceiling"] = {}
        phases.ceiling(ctx, out["ceiling"], args.changes, args.tx_size, args.ceiling_sinks, args.ceiling_stream,
                       args.ceiling_batch)

    def freshness() -> None:
        ctx.footprint = False  # measured under the heavier loads, not while reading the sinks
        out["freshness"] = phases.freshness(ctx, args.freshness_rate, args.freshness_seconds)

    try:
        if "trickle" in chosen:
            run("trickle", f"trickle: idle baseline {args.idle_seconds:.0f}s, then {args.trickle_rate:,.0f} changes/s "
                f"for {args.trickle_seconds:.0f}s", trickle)
        if "capture" in chosen or "backlog" in chosen:
            label = " + ".join(p for p in ("capture", "backlog") if p in chosen)
            run("backlog", f"{label}: {args.changes:,} changes as fast as PostgreSQL takes them", capture_backlog)
        if "steps" in chosen:
            run("steps", f"steps: {', '.join(f'{r:,.0f}' for r in args.steps)} changes/s"
                + (f", then x{args.step_growth} while every step holds" if args.step_growth > 1 else ""), steps)
        if "footprint" in chosen and not ({"backlog", "steps"} & set(chosen)):
            run("footprint", f"footprint: steady {args.footprint_rate:,.0f} changes/s for "
                f"{args.footprint_seconds:.0f}s", footprint_load)
        if "freshness" in chosen:
            run("freshness", f"freshness: inserts at {args.freshness_rate:,.0f}/s for "
                f"{args.freshness_seconds:.0f}s", freshness)
        if "ceiling" in chosen:
            run("ceiling", f"ceiling: Debezium alone and each sink's writer alone, {args.changes:,} changes "
                f"(sinks: {', '.join(args.ceiling_sinks) or 'none'}; stream: {args.ceiling_stream})", ceiling)
    except KeyboardInterrupt:
        result["interrupted"] = True
        say("    interrupted: figures so far are kept")
    finally:
        if "footprint" in chosen:
            out["footprint"] = {"loads": ctx.footprints}
        ctx.close()
        result["seconds"] = round(time.time() - started, 1)
        save()
    say("==> figures")
    for line in summary_lines(result):
        say("    " + line)
    say(f"==> written to {path}")
    return 0
