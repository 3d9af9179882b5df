"""Operating the platform through Airflow: the steps the demo runs and the e2e tests assert.

Everything goes through Airflow's REST API, as a user clicking in the UI would.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable

import requests

from cdc_local.airflow_api import AirflowApiError, AirflowClient
from cdc_platform import names
from cdc_platform.delivery.rest_contract import FAULTS_PATH
from cdc_platform.stream_progress import stream_checkpoint_root

PIPELINE_DAGS = {"cdc_provision", "cdc_stream", "cdc_watchdog", "cdc_reconcile", "cdc_dlq_reprocess",
                 "cdc_dlq_replay_parked", "cdc_resnapshot"}
STREAM_APPLICATION = "spark_cdc_multi_sink.py"


def airflow_client(env) -> AirflowClient:
    return AirflowClient(env["AIRFLOW_URL"], env["AIRFLOW_USER"], env["AIRFLOW_PASSWORD"])


def run_dag(client: AirflowClient, dag_id: str, conf: dict | None = None, timeout: float = 600,
            unpause: bool = True, log: Callable[[str], None] = print) -> dict:
    """Trigger a run, wait for it to finish; returns the run with its task instances."""
    if unpause:
        client.set_paused(dag_id, False)
    run_id = client.trigger(dag_id, conf)
    log(f"    triggered {dag_id} ({run_id})")
    run = client.wait_for_run(dag_id, run_id, timeout=timeout)
    run["task_instances"] = client.task_instances(dag_id, run_id)
    return run


def pipeline_page_url(env) -> str:
    """The "CDC pipeline" page inside the Airflow UI (the cdc_pipeline_page plugin's nav entry)."""
    from cdc_platform.pipeline_page.app import UI_ROUTE

    return f"{env['AIRFLOW_URL'].rstrip('/')}/plugin/{UI_ROUTE}"


def stream_task_state(client: AirflowClient) -> str | None:
    runs = client.runs("cdc_stream", limit=1)
    if not runs:
        return None
    tis = client.task_instances("cdc_stream", runs[0]["dag_run_id"])
    return tis[0]["state"] if tis else runs[0]["state"]


def start_stream(client: AirflowClient, env, timeout: float = 240, log: Callable[[str], None] = print) -> list[int]:
    """Unpause cdc_stream (a continuous DAG) and wait until its task runs the Spark driver.

    Changes written from then on are never missed: the queries start from their checkpoints
    (or the earliest offsets), so readiness means "running", not "caught up"."""
    client.set_paused("cdc_stream", False)
    deadline = time.monotonic() + timeout
    while True:
        state, pids = stream_task_state(client), stream_driver_pids()
        if state == "running" and pids:
            return pids
        if time.monotonic() > deadline:
            raise AirflowApiError(f"cdc_stream not running after {timeout:.0f}s (task state {state}); "
                                  "see the cdc_stream task log in the Airflow UI")
        time.sleep(2)


ACTIVE_TASK_STATES = ("running", "queued", "scheduled", "up_for_retry", "up_for_reschedule", "restarting")


def stop_stream(client: AirflowClient, env, timeout: float = 300, quiet_s: float = 10) -> list[tuple[str, int]]:
    """Stop the stream as a user does in the UI: pause cdc_stream, mark its running task failed,
    then wait until the driver has finished its micro-batches and exited. A run the scheduler
    had already queued when the DAG was paused still starts; its task is marked failed too, so
    the stream counts as stopped only once no driver and no active task was seen for ``quiet_s``.
    Returns the (run id, try number) of each task it stopped that had been running."""
    client.set_paused("cdc_stream", True)
    stopped: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout
    quiet_since = None
    while True:
        active = 0
        for run in client.runs("cdc_stream", limit=5):
            if run["state"] not in ("running", "queued"):
                continue
            for ti in client.task_instances("cdc_stream", run["dag_run_id"]):
                if ti["state"] in ACTIVE_TASK_STATES:
                    active += 1
                    if ti["state"] == "running":
                        stopped.append((run["dag_run_id"], int(ti.get("try_number") or 1)))
                    client.set_task_state("cdc_stream", run["dag_run_id"], ti["task_id"], "failed")
        pids = stream_driver_pids()
        now = time.monotonic()
        if active or pids:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            return stopped
        if now > deadline:
            raise TimeoutError(f"the stream driver still runs {timeout:.0f}s after its task was marked failed: "
                               f"{describe_processes(pids)}; last lines of its task log:\n"
                               + "\n".join(stream_task_log_tail(env)))
        time.sleep(1)


def set_aside_checkpoint(env, query: str) -> Path:
    """Move a stopped stream's query checkpoint aside (kept, renamed); the query then starts
    afresh from the earliest offsets Kafka still has. The step after offsets were lost."""
    checkpoint = stream_checkpoint_root(env) / query
    aside = checkpoint.with_name(f"{query}.set-aside-{time.strftime('%Y%m%dT%H%M%S')}")
    if stream_driver_pids():
        raise RuntimeError("stop the stream first (pipeline_driver.stop_stream, or pause cdc_stream and mark its task failed)")
    checkpoint.rename(aside)
    (stream_checkpoint_root(env) / names.STREAM_PROGRESS_DIR / f"{query}.failure.json").unlink(missing_ok=True)
    return aside


def describe_processes(pids: list[int]) -> str:
    import psutil

    described = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            described.append(f"{pid} {proc.name()} {proc.status()} parent={proc.ppid()}")
        except psutil.Error:
            described.append(f"{pid} gone")
    return ", ".join(described)


def stream_task_log_tail(env, lines: int = 40, run_id: str | None = None, try_number: int | None = None) -> list[str]:
    """The last lines of a cdc_stream task log (the driver's own output is in it): the one of
    ``run_id`` and ``try_number``, or the newest."""
    root = Path(env["CDC_STATE_DIR"]) / "logs" / "airflow-tasks" / "dag_id=cdc_stream"
    pattern = (f"run_id={run_id}/task_id=run_stream/attempt={try_number}.log" if run_id and try_number
               else "run_id=*/task_id=run_stream/attempt=*.log")
    logs = sorted(root.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not logs:
        return [f"(no task log under {root})"]
    return logs[-1].read_text(errors="replace").splitlines()[-lines:]


def stream_driver_pids() -> list[int]:
    """PIDs of the running stream's spark-submit JVM (the Spark driver) and its Python process."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if STREAM_APPLICATION in cmdline and ("SparkSubmit" in cmdline or "python" in cmdline.split(" ")[0]):
            pids.append(proc.info["pid"])
    return pids


def kill_stream_driver() -> list[int]:
    """SIGKILL the driver: no shutdown hooks, no graceful stop (a crash, as kill -9 would be)."""
    pids = stream_driver_pids()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


class RestApi:
    """The REST microservice, as the demo and tests look at it."""

    def __init__(self, env):
        self.url = env["API_URL"].rstrip("/")
        self.headers = {"Authorization": f"Bearer {env['API_TOKEN']}"}
        self.admin_headers = {"Authorization": f"Bearer {env['API_ADMIN_TOKEN']}"}

    def set_faults(self, **faults) -> None:
        requests.post(f"{self.url}{FAULTS_PATH}", json=faults, headers=self.admin_headers,
                      timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        requests.delete(f"{self.url}{FAULTS_PATH}", headers=self.admin_headers, timeout=10).raise_for_status()

    def count(self, prefix: str | None = None) -> int:
        params = {"prefix": prefix} if prefix else {}
        response = requests.get(f"{self.url}/v1/events/count", params=params, headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()["count"]

    def events_for_rows(self, row_ids, chunk: int = 200, limit: int = 1000) -> dict[int, list[dict]]:
        """Every stored event of ``row_ids``, read by ranges of row ids (a request per row only
        where a range holds more than ``limit`` events)."""
        wanted = sorted(set(row_ids))
        found: dict[int, list[dict]] = {rid: [] for rid in wanted}
        for start in range(0, len(wanted), chunk):
            ids = wanted[start:start + chunk]
            response = requests.get(f"{self.url}/v1/events", headers=self.headers, timeout=30,
                                    params={"row_min": ids[0], "row_max": ids[-1], "limit": limit})
            response.raise_for_status()
            events = response.json()["events"]
            if len(events) >= limit:
                for rid in ids:
                    found[rid] = self.events_for_row(rid)
                continue
            for event in events:
                if event["row_id"] in found:
                    found[event["row_id"]].append(event)
        return found

    def events_for_row(self, row_id: int) -> list[dict]:
        response = requests.get(f"{self.url}/v1/events", params={"row_id": row_id, "limit": 1000},
                                headers=self.headers, timeout=10)
        response.raise_for_status()
        body = response.json()
        return body["events"] if isinstance(body, dict) else body


def alerts_since(env, since_iso: str, source: str | None = None) -> list[dict]:
    params = {"since": since_iso}
    if source:
        params["source"] = source
    response = requests.get(env["ALERTS_URL"], params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def dlq_audit_log(env) -> Path:
    configured = os.environ.get("CDC_DLQ_AUDIT_LOG")
    return Path(configured) if configured else Path(env["CDC_STATE_DIR"]) / "logs" / "restapi_dlq.log"
