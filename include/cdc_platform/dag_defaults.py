"""What every CDC DAG shares, defined once: owner and retries, deadline alerts, and the
watchdog's params, generated from the thresholds' own definition (``watchdog.Thresholds``).

Imported by the DAG files at parse time, so it stays light: ``airflow.sdk`` and dataclasses.
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from datetime import timedelta

OWNER = "data-platform"
DEADLINE_CALLBACK = "cdc_platform.alerting.deadline_missed"


def default_args(retries: int, retry_delay: timedelta, **more) -> dict:
    return {"owner": OWNER, "retries": retries, "retry_delay": retry_delay, **more}


def deadline_after(minutes: int):
    """A Deadline Alert ``minutes`` after the run's logical date, posted to the alert webhook
    with the same number in words."""
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(DEADLINE_CALLBACK, kwargs={"expected": f"{minutes} minutes"}),
    )


def confirm_param(consequence: str) -> dict:
    """The ``confirm`` param of a manual DAG that acts on data; its task passes it to
    ``orchestration.require_confirmation``, which fails the run while it is false."""
    from airflow.sdk import Param

    return {"confirm": Param(False, type="boolean", description=f"Must be true: {consequence}")}


def dlq_attempt_params() -> dict:
    """The DLQ's retry rule as params (semantics.DLQ_MAX_ATTEMPTS, DLQ_BACKOFF_S)."""
    from airflow.sdk import Param

    from cdc_platform import semantics

    return {"max_attempts": Param(semantics.DLQ_MAX_ATTEMPTS, type="integer", minimum=1),
            "base_backoff_seconds": Param(semantics.DLQ_BACKOFF_S, type="number", minimum=0)}


def watchdog_params() -> dict:
    """One Param per threshold, with its default, type and minimum; plus ``auto_restart``."""
    from airflow.sdk import Param

    from cdc_platform.health.checks import Thresholds

    params = {}
    for threshold in fields(Thresholds):
        if threshold.default is MISSING:
            raise TypeError(f"threshold {threshold.name} has no default")
        kind = "integer" if threshold.type in ("int", int) else "number"
        params[threshold.name] = Param(threshold.default, type=kind,
                                       minimum=threshold.metadata.get("minimum", 0))
    params["auto_restart"] = Param(True, type="boolean")
    return params
