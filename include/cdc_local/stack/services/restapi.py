"""The REST microservice that receives the stream's events (FastAPI under uvicorn)."""
from __future__ import annotations

from cdc_platform.delivery.rest_contract import HEALTH_PATH

from cdc_local.stack.config import StackConfig
from cdc_local.stack.service import Service


def service(cfg: StackConfig, secrets: dict[str, str]) -> Service:
    port = cfg.ports["restapi"]
    db_path = cfg.data / "restapi" / "events.db"

    def prepare() -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        import requests

        return requests.get(f"http://{cfg.host}:{port}{HEALTH_PATH}", timeout=2).status_code == 200

    return Service(
        name="restapi",
        command=[str(cfg.venv / "bin" / "python"), "-m", "cdc_local.restapi",
                 "--host", cfg.host, "--port", str(port), "--db", str(db_path)],
        port=port,
        ready=ready,
        ready_timeout=60,
        # Through the launcher's 0600 env file: the token never shows on a command line.
        environment={
            "API_TOKEN": secrets["api_token"],
            "API_ADMIN_TOKEN": secrets["api_admin_token"],
            "PYTHONPATH": str(cfg.repo_root / "include"),
            "PYTHONUNBUFFERED": "1",
        },
        prepare=prepare,
    )
