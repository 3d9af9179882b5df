"""Stack manager CLI: ``python -m cdc_local.stack {up,down,status,logs,env}``.

The Makefile wraps it (`make up`, `make down`, ...); see README.md.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from cdc_local.stack import envfile, preflight
from cdc_local.stack import secrets as stack_secrets
from cdc_local.stack.config import StackConfig
from cdc_local.stack.service import StackError, tail, wait_ready
from cdc_local.stack.services import build_all
from cdc_local.stack.supervisor import Supervisor


def _services(cfg: StackConfig):
    secrets = stack_secrets.load_or_create(cfg.secrets)
    return secrets, build_all(cfg, secrets)


def cmd_up(cfg: StackConfig, args: argparse.Namespace) -> int:
    started = time.monotonic()
    java = preflight.check_java(cfg)
    free = preflight.check_disk(cfg)
    print(f"==> preflight: Java {java}, {free:.0f} GiB free, state dir {cfg.state_dir}")
    secrets, services = _services(cfg)
    wanted = set(args.services) if args.services else None
    envfile.write(cfg.env_file, envfile.build(cfg, secrets))
    supervisor = Supervisor(cfg)
    supervisor.start(services)
    for svc in services:
        if wanted and svc.name not in wanted:
            continue
        info = supervisor.info(svc.name)
        if info and info["statename"] == "RUNNING":
            try:
                if svc.ready():
                    print(f"==> {svc.name}: already running (pid {info['pid']})")
                    continue
            except Exception:  # noqa: BLE001 - not ready yet; fall through to waiting
                pass
        else:
            preflight.check_ports_free(cfg, svc)
            if svc.prepare:
                svc.prepare()
            supervisor.start_process(svc.name)
        print(f"==> {svc.name}: starting", flush=True)
        waited = wait_ready(svc.ready, svc.name, svc.ready_timeout, cfg.log_file(svc.name),
                            is_alive=lambda name=svc.name: supervisor.alive(name))
        # Ready, and past supervisord's startsecs, so `status` agrees the moment `up` returns.
        waited += wait_ready(lambda name=svc.name: supervisor.info(name)["statename"] == "RUNNING",
                             f"{svc.name} (supervisor RUNNING)", 30, cfg.log_file(svc.name),
                             is_alive=lambda name=svc.name: supervisor.alive(name), interval=0.2)
        if svc.after_ready:
            svc.after_ready()
        print(f"    {svc.name} ready in {waited:.1f}s")
    print(f"==> stack up in {time.monotonic() - started:.0f}s. Connection details: . {cfg.env_file}")
    print_status(cfg, supervisor, services)
    return 0


def _stack_processes(cfg: StackConfig) -> list[int]:
    """PIDs of service processes still alive: their command lines point at the
    stack's config, jars or data. Ancestors of this process (a test run, make) are spared."""
    import psutil

    markers = (str(cfg.conf), str(cfg.jars), str(cfg.data))
    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if proc.info["pid"] not in spared and any(m in part for part in cmdline for m in markers):
                found.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def cmd_down(cfg: StackConfig, args: argparse.Namespace) -> int:
    from cdc_local.stack import spark_standalone

    _, services = _services(cfg)
    spark_standalone.down(cfg)  # a standalone cluster started for the stream, if any
    supervisor = Supervisor(cfg)
    if supervisor.running():
        for svc in reversed(services):
            info = supervisor.info(svc.name)
            if info and info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
                print(f"==> stopping {svc.name}", flush=True)
                supervisor.stop_process(svc.name)
        supervisor.shutdown()
    leftovers = _stack_processes(cfg)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in leftovers:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.3)
            leftovers = _stack_processes(cfg)
        if not leftovers:
            break
        print(f"    warning: processes still running after SIG{sig.name[3:]}: {leftovers}", file=sys.stderr)
    print("==> stack down (data kept in", cfg.data, ")")
    return 0


def _tree_memory(pid: int) -> int:
    """Proportional set size of a process tree: forked workers share pages, so RSS would overcount."""
    import psutil

    total = 0
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in procs:
        try:
            total += getattr(proc.memory_full_info(), "pss", 0) or proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def print_status(cfg: StackConfig, supervisor: Supervisor, services) -> int:
    infos = supervisor.all_info()
    print(f"{'SERVICE':<27} {'STATE':<9} {'PORT':>6} {'PID':>8} {'PSS MiB':>8}  UPTIME")
    total = 0
    bad = 0
    for svc in services:
        info = infos.get(svc.name)
        state = info["statename"] if info else "STOPPED"
        pid = info["pid"] if info and info["pid"] else None
        rss = _tree_memory(pid) if pid else 0
        total += rss
        uptime = info["description"].split("uptime ")[-1] if info and state == "RUNNING" else ""
        bad += state != "RUNNING"
        print(f"{svc.name:<27} {state:<9} {svc.port or '-':>6} {pid or '-':>8} {rss / 2**20:>8.0f}  {uptime}")
    print(f"{'total':<27} {'':<9} {'':>6} {'':>8} {total / 2**20:>8.0f}")
    return 0 if bad == 0 else 3


def cmd_status(cfg: StackConfig, args: argparse.Namespace) -> int:
    _, services = _services(cfg)
    supervisor = Supervisor(cfg)
    if not supervisor.running():
        print("stack is down (supervisord not running). Start it with `make up`.")
        return 3
    return print_status(cfg, supervisor, services)


def cmd_logs(cfg: StackConfig, args: argparse.Namespace) -> int:
    _, services = _services(cfg)
    names = args.services or [s.name for s in services]
    if args.follow:
        paths = [str(cfg.log_file(n)) for n in names]
        return subprocess.call(["tail", "-n", str(args.lines), "-F", *paths])
    for name in names:
        print(f"==> {cfg.log_file(name)} <==")
        print(tail(cfg.log_file(name), args.lines))
    return 0


def cmd_restart(cfg: StackConfig, args: argparse.Namespace) -> int:
    _, services = _services(cfg)
    supervisor = Supervisor(cfg)
    wanted = args.services or [s.name for s in services]
    unknown = set(wanted) - {s.name for s in services}
    if unknown:
        raise StackError(f"unknown service(s): {', '.join(sorted(unknown))}")
    if supervisor.running():
        for svc in reversed(services):
            if svc.name in wanted:
                print(f"==> stopping {svc.name}", flush=True)
                supervisor.stop_process(svc.name)
    args.services = wanted
    return cmd_up(cfg, args)


def cmd_env(cfg: StackConfig, args: argparse.Namespace) -> int:
    print(cfg.env_file.read_text() if cfg.env_file.exists() else f"{cfg.env_file} not written yet; run `make up`.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every service (or the named ones) and wait until ready")
    up.add_argument("services", nargs="*")
    sub.add_parser("down", help="stop every service and the supervisor; data is kept")
    restart = sub.add_parser("restart", help="stop and start the named services (all by default)")
    restart.add_argument("services", nargs="*")
    sub.add_parser("status", help="state, port, pid and memory of each service")
    logs = sub.add_parser("logs", help="tail the service logs")
    logs.add_argument("services", nargs="*")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("env", help="print the connection details (.stack/env)")
    args = parser.parse_args(argv)
    cfg = StackConfig.load()
    handler = {"up": cmd_up, "down": cmd_down, "restart": cmd_restart, "status": cmd_status, "logs": cmd_logs, "env": cmd_env}[args.command]
    try:
        return handler(cfg, args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
