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

import cdc_local.bench as package
from cdc_local.bench import logic

PHASES = ("capture", "backlog", "steps", "freshness", "footprint")
REPO_ROOT = Path(__file__).resolve().parents[3]


def parse_phases(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    if chosen == ["all"]:
        return list(PHASES)
    unknown = [p for p in chosen if p not in PHASES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown phase(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(PHASES)} or all")
    return [p for p in PHASES if p in chosen]


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
    g = p.add_argument_group("capture and backlog")
    g.add_argument("--changes", type=int, default=100_000, help="changes in the backlog load (default 100000)")
    g.add_argument("--tx-size", type=int, default=500, help="changes per transaction of the backlog load (default 500)")
    g.add_argument("--sample-interval", type=float, default=0.5,
                   help="seconds between end-offset samples of the source topics (default 0.5)")
    g = p.add_argument_group("sustained steps")
    g.add_argument("--steps", type=parse_rates, default=[500, 1000, 2000, 5000],
                   help="changes/s of the listed steps (default 500,1000,2000,5000; '2k' works)")
    g.add_argument("--step-growth", type=float, default=1.5,
                   help="after the list, raise the rate by this factor while every step held (default 1.5; 0: no)")
    g.add_argument("--max-step", type=float, default=50_000, help="highest rate the growth goes to (default 50000)")
    g.add_argument("--step-seconds", type=float, default=120, help="measured seconds per step (default 120)")
    g.add_argument("--warmup", type=float, default=15, help="seconds of each step before measuring (default 15)")
    g.add_argument("--lag-interval", type=float, default=3, help="seconds between lag samples (default 3)")
    g.add_argument("--keep-going", action="store_true", help="run every listed step even after one is not held")
    g = p.add_argument_group("freshness")
    g.add_argument("--freshness-rate", type=float, default=1000, help="inserts/s (default 1000)")
    g.add_argument("--freshness-seconds", type=float, default=60, help="seconds of load (default 60)")
    g = p.add_argument_group("footprint (only when it runs without backlog and steps)")
    g.add_argument("--footprint-rate", type=float, default=2000, help="changes/s of its own load (default 2000)")
    g.add_argument("--footprint-seconds", type=float, default=60, help="seconds of its own load (default 60)")
    g = p.add_argument_group("general")
    g.add_argument("--seed", type=int, default=99, help="seed of the generated rows (default 99)")
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


def summary_lines(result: dict) -> list[str]:
    phases = result.get("phases", {})
    lines = []
    capture = phases.get("capture")
    if capture:
        lines.append(f"capture     {capture['changes_per_s']:,.0f} changes/s into Kafka "
                     f"({capture['load']['changes']:,} changes in {capture['seconds']}s)")
    backlog = phases.get("backlog")
    if backlog:
        per_query = ", ".join(f"{q} {f['changes_per_s']:,.0f}/s" if f["changes_per_s"] else f"{q} -"
                              for q, f in backlog["queries"].items())
        lines.append(f"backlog     {backlog['changes']:,} changes: {per_query}; pipeline "
                     f"{backlog['pipeline_changes_per_s']} changes/s = {backlog['ratio_to_capture']} x capture")
    steps = phases.get("steps")
    if steps:
        word = {True: "held", False: "not held", None: "generator-limited"}
        verdicts = ", ".join(f"{s['rate']:,.0f} {word[s['holds']]}" for s in steps["steps"])
        lines.append(f"steps       {verdicts}; highest held {steps['highest_held_changes_per_s'] or 'none'} changes/s")
    fresh = phases.get("freshness")
    if fresh:
        for sink, f in fresh["sinks"].items():
            text = f.get("error") or (f"p50 {f['p50_s']}s p95 {f['p95_s']}s p99 {f['p99_s']}s max {f['max_s']}s "
                                      f"({f['count']:,} events, {f['missing']:,} missing)" if f.get("count")
                                      else "no event found")
            lines.append(f"freshness   {sink:<9} {text}")
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
    return lines


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
    queries = measure.stream_queries()
    tombstones = measure.tombstones_enabled(env)
    result.update(stream_queries=list(queries), tombstones_on_delete=tombstones, phases={})
    ctx = phases.Context(env=env, queries=queries, root=measure.checkpoint_root(env), tombstones=tombstones,
                         seed=args.seed, sample_interval=args.sample_interval, drain_timeout=args.drain_timeout,
                         tick_s=args.tick_ms / 1000, say=say, footprint="footprint" in chosen)
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

    def freshness() -> None:
        ctx.footprint = False  # measured under the heavier loads, not while reading the sinks
        out["freshness"] = phases.freshness(ctx, args.freshness_rate, args.freshness_seconds)

    try:
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
