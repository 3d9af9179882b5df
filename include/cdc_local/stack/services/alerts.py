"""The alert receiver: the webhook that the Airflow notifier and the watchdog post to."""
from __future__ import annotations

from cdc_local.stack.config import StackConfig
from cdc_local.stack.service import Service


def store_path(cfg: StackConfig):
    return cfg.data / "alerts" / "alerts.jsonl"


def service(cfg: StackConfig, secrets: dict[str, str]) -> Service:
    port = cfg.ports["alerts"]

    def ready() -> bool:
        import requests

        return requests.get(f"http://{cfg.host}:{port}/health", timeout=2).ok

    return Service(
        name="alerts",
        command=[str(cfg.venv / "bin" / "python"), "-m", "cdc_local.alerts_receiver",
                 "--host", cfg.host, "--port", str(port), "--store", str(store_path(cfg))],
        port=port,
        ready=ready,
        ready_timeout=30,
        environment={"PYTHONPATH": str(cfg.repo_root / "include"), "PYTHONUNBUFFERED": "1"},
    )
