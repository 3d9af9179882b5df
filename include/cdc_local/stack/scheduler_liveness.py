"""A liveness probe for the local Airflow scheduler, run by supervisord beside it.

When its metadata database goes away (a PostgreSQL restart), the scheduler leaves its loop and
calls ``LocalExecutor.end()``, which waits for the running tasks. The continuous ``cdc_stream``
task never ends, so the process neither schedules nor exits, and supervisord, which only sees
exits, never restarts it. Kubernetes deployments guard against this with a liveness probe on
the scheduler's heartbeat (the official Helm chart runs ``airflow jobs check``); this is that
probe for the embedded stack. It reads the heartbeat from the API server's health endpoint,
and when it is stale restarts the scheduler through supervisord and posts an alert.

The restart stops the scheduler's process group, its running tasks included: the new
scheduler finds the stream's task orphaned and runs it again, and the stream resumes from its
checkpoints.
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

log = logging.getLogger("scheduler-liveness")

PROGRAM = "airflow-scheduler"
# The scheduler heartbeats every few seconds; Airflow itself calls it unhealthy after 30 s. A
# stream batch or a busy 2-core machine can delay a beat, so only a much longer silence counts.
STALE_AFTER_S = 120.0
# A scheduler that just started has no heartbeat yet; judge it only after this long.
STARTUP_GRACE_S = 180.0
POLL_S = 15.0


@dataclass(frozen=True)
class Verdict:
    restart: bool
    reason: str


def judge(now: datetime, heartbeat: datetime | None, running_since: datetime | None,
          stale_after_s: float = STALE_AFTER_S, grace_s: float = STARTUP_GRACE_S) -> Verdict:
    """Whether the scheduler process, RUNNING under supervisord since ``running_since`` (None
    when it is not running), must be restarted, given its last heartbeat."""
    if running_since is None:
        return Verdict(False, "not running: supervisord starts it")
    up_s = (now - running_since).total_seconds()
    if up_s < grace_s:
        return Verdict(False, f"started {up_s:.0f}s ago")
    if heartbeat is None:
        return Verdict(True, f"no heartbeat after {up_s:.0f}s running")
    # A heartbeat older than this process belongs to the previous one.
    silent_s = (now - max(heartbeat, running_since)).total_seconds()
    if silent_s > stale_after_s:
        return Verdict(True, f"no heartbeat for {silent_s:.0f}s (limit {stale_after_s:.0f}s)")
    return Verdict(False, f"heartbeat {silent_s:.0f}s ago")


def scheduler_heartbeat(health_url: str, timeout: float = 5) -> datetime | None:
    """The scheduler's latest heartbeat as the API server reports it; raises when the API
    server cannot tell (it is down, or so is the database)."""
    import requests

    response = requests.get(health_url, timeout=timeout)
    response.raise_for_status()
    report = response.json()
    if report.get("metadatabase", {}).get("status") != "healthy":
        raise RuntimeError(f"metadata database unhealthy: {report.get('metadatabase')}")
    beat = report.get("scheduler", {}).get("latest_scheduler_heartbeat")
    return datetime.fromisoformat(beat) if beat else None


def running_since(process_info: dict | None) -> datetime | None:
    if not process_info or process_info.get("statename") != "RUNNING":
        return None
    return datetime.fromtimestamp(process_info["start"], tz=timezone.utc)


def probe_once(supervisor, health_url: str, alerts_url: str | None, stale_after_s: float, grace_s: float) -> Verdict:
    since = running_since(supervisor.info(PROGRAM))
    try:
        beat = scheduler_heartbeat(health_url)
    except Exception as exc:  # noqa: BLE001 - without the API server nothing can be judged
        return Verdict(False, f"cannot read the heartbeat: {type(exc).__name__}: {exc}")
    verdict = judge(datetime.now(timezone.utc), beat, since, stale_after_s, grace_s)
    if verdict.restart:
        log.error("restarting %s: %s", PROGRAM, verdict.reason)
        supervisor.stop_process(PROGRAM)
        supervisor.start_process(PROGRAM)
        if alerts_url:
            from cdc_platform.alerting import build_alert, post_alert

            try:
                post_alert(alerts_url, build_alert(
                    "Airflow scheduler restarted by its liveness probe", "scheduler_liveness",
                    message=f"{PROGRAM}: {verdict.reason}; its running tasks were stopped and run again",
                    details={"program": PROGRAM, "reason": verdict.reason}))
            except Exception as exc:  # noqa: BLE001 - the restart matters more than its alert
                log.warning("alert not delivered: %s", exc)
    return verdict


def main(argv: list[str] | None = None) -> int:
    from cdc_local.stack.config import StackConfig
    from cdc_local.stack.supervisor import Supervisor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--health-url", required=True)
    parser.add_argument("--alerts-url")
    parser.add_argument("--stale-after", type=float, default=STALE_AFTER_S)
    parser.add_argument("--grace", type=float, default=STARTUP_GRACE_S)
    parser.add_argument("--interval", type=float, default=POLL_S)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    supervisor = Supervisor(StackConfig.load())
    log.info("watching %s: restart after %.0fs without a heartbeat", PROGRAM, args.stale_after)
    last_reason = None
    while True:
        verdict = probe_once(supervisor, args.health_url, args.alerts_url, args.stale_after, args.grace)
        # Log changes of state only: one line per poll would bury the restarts.
        kind = verdict.reason.split(" ")[0]
        if verdict.restart or kind != last_reason:
            log.info("%s", verdict.reason)
            last_reason = kind
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
