"""Alerts: one JSON shape, posted to a webhook named by an Airflow connection.

Used by the task-failure notifier, the watchdog's thresholds, the DLQ parking
step and Deadline Alerts (an async callback run by the triggerer).
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any

import requests

from cdc_platform.connections import ALERTS_CONN_ID

log = logging.getLogger(__name__)


class AlertDeliveryError(RuntimeError):
    pass


def build_alert(title: str, source: str, severity: str = "error", message: str = "",
                details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "title": title,
        "source": source,
        "severity": severity,
        "message": message,
        "details": details or {},
        "raised_at": datetime.now(timezone.utc).isoformat(),
    }


def webhook_url(conn_id: str = ALERTS_CONN_ID) -> str:
    """The webhook URL of an http connection: its base URL + ``extra.endpoint``."""
    from airflow.sdk import Connection

    from cdc_platform.hooks.http import base_url

    return base_url(conn_id) + ((Connection.get(conn_id).extra_dejson or {}).get("endpoint") or "")


def post_alert(url: str, alert: dict[str, Any], timeout: float = 10.0, attempts: int = 3) -> dict:
    last_error = None
    for attempt in range(1, attempts + 1):
        try:
            response = requests.post(url, json=alert, timeout=timeout)
            if response.status_code < 300:
                return response.json() if response.content else {}
            last_error = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code < 500:
                break
        except requests.RequestException as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            time.sleep(0.5 * attempt)
    raise AlertDeliveryError(f"alert {alert.get('title')!r} not delivered to {url}: {last_error}")


def send(title: str, source: str, severity: str = "error", message: str = "",
         details: dict[str, Any] | None = None, conn_id: str = ALERTS_CONN_ID) -> dict:
    return deliver(build_alert(title, source, severity, message, details), conn_id)


def deliver(alert: dict[str, Any], conn_id: str = ALERTS_CONN_ID) -> dict:
    """Record the alert in the health history (the UI page lists it, linked to its run), then
    post it to the webhook; a history that cannot be written never holds the alert back."""
    from cdc_platform.health import recorder

    details = alert.get("details") or {}
    recorder.record_event("alert", alert["title"],
                          {"source": alert.get("source"), "message": (alert.get("message") or "")[:2000]},
                          severity=alert.get("severity"), dag_id=details.get("dag_id"), run_id=details.get("run_id"))
    return post_alert(webhook_url(conn_id), alert)


async def deadline_missed(context: dict | None = None, conn_id: str = ALERTS_CONN_ID, **kwargs: Any) -> None:
    """Deadline Alert callback (AsyncCallback, runs in the triggerer).

    ``context`` carries the DAG run and the deadline; extra kwargs land in the details.
    """
    context = context or {}
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id = dag_run.get("dag_id", "?")
    alert = build_alert(
        title=f"Deadline missed: {dag_id}",
        source="deadline",
        severity="warning",
        message=f"run {dag_run.get('dag_run_id', '?')} of {dag_id} did not finish by {deadline.get('deadline_time')}",
        details={"dag_id": dag_id, "run_id": dag_run.get("dag_run_id"), "state": dag_run.get("state"),
                 "deadline_time": str(deadline.get("deadline_time")), **kwargs},
    )
    await asyncio.to_thread(deliver, alert, conn_id)


def alert_from_task_context(context: dict, title: str | None, severity: str) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", None)
    run_id = getattr(ti, "run_id", None) or context.get("run_id")
    exception = context.get("exception")
    return build_alert(
        title=title or f"Task failed: {dag_id}.{task_id}",
        source="airflow",
        severity=severity,
        message=str(exception)[:2000] if exception else "",
        details={"dag_id": dag_id, "task_id": task_id, "run_id": run_id,
                 "try_number": getattr(ti, "try_number", None),
                 "log_url": getattr(ti, "log_url", None)},
    )
