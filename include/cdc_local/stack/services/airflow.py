"""Airflow 3 as its four components, metadata in the stack's PostgreSQL, LocalExecutor."""
from __future__ import annotations

import io
import json
import os
import subprocess
from datetime import datetime, timezone
from configparser import ConfigParser
from urllib.parse import quote

from cdc_local.stack.config import StackConfig
from cdc_local.stack.secrets import write_private
from cdc_local.stack.service import Service, StackError
from cdc_local.stack.services.postgres import AIRFLOW_DB, AIRFLOW_USER

# Long-running tasks (the streaming job) die when their execution JWT expires
# (apache/airflow#67939); a week outlives any sane restart cadence.
EXECUTION_JWT_SECONDS = 7 * 24 * 3600

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Airflow binds its log servers to every interface, with no setting to change it. The API
# server reads task logs from the shared local log folder, so they are not started at all.
SKIP_LOG_SERVER = {"scheduler": ("--skip-serve-logs",), "triggerer": ("--skip-serve-logs",)}
HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


def process_environment(cfg: StackConfig, stack_env: dict[str, str]) -> dict[str, str]:
    """Environment of every Airflow process (and of the tasks it runs)."""
    env = dict(stack_env)
    env["AIRFLOW_HOME"] = str(cfg.airflow_home)
    env["PATH"] = f"{cfg.venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = f"{cfg.repo_root / 'include'}:{cfg.repo_root / 'spark_jobs'}"
    if os.environ.get("JAVA_HOME"):
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    env["PYTHONUNBUFFERED"] = "1"
    # The stream's Spark driver (its RPC, block manager and UI ports) binds where the stack does;
    # the embedded stack runs Spark in local mode, so nothing needs to reach it from outside.
    env["SPARK_LOCAL_IP"] = cfg.host
    return env


def health(cfg: StackConfig) -> dict:
    import requests

    response = requests.get(f"http://{cfg.host}:{cfg.ports['airflow']}/api/v2/monitor/health", timeout=3)
    response.raise_for_status()
    return response.json()


def write_config(cfg: StackConfig, secrets: dict[str, str], admin_user: str) -> None:
    home = cfg.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    passwords_file = cfg.secrets / "airflow-passwords.json"
    write_private(passwords_file, json.dumps({admin_user: secrets["airflow_admin_password"]}) + "\n")
    db_url = (f"postgresql+psycopg2://{AIRFLOW_USER}:{quote(secrets['airflow_db_password'], safe='')}"
              f"@{cfg.host}:{cfg.ports['postgres']}/{AIRFLOW_DB}")
    base_url = f"http://{cfg.host}:{cfg.ports['airflow']}"
    parser = ConfigParser(interpolation=None)
    parser.read_dict({
        "core": {
            "dags_folder": str(cfg.repo_root / "dags"),
            "plugins_folder": str(cfg.repo_root / "plugins"),
            "executor": "LocalExecutor",
            "parallelism": "8",
            "load_examples": "False",
            "fernet_key": secrets["airflow_fernet_key"],
            "simple_auth_manager_users": f"{admin_user}:admin",
            "simple_auth_manager_passwords_file": str(passwords_file),
            "execution_api_server_url": f"{base_url}/execution/",
        },
        "database": {"sql_alchemy_conn": db_url},
        "api": {
            "host": cfg.host,
            "port": str(cfg.ports["airflow"]),
            "base_url": base_url,
            "workers": "1",
            "secret_key": secrets["airflow_api_secret_key"],
            "expose_config": "False",
        },
        "api_auth": {"jwt_secret": secrets["airflow_jwt_secret"]},
        "execution_api": {"jwt_expiration_time": str(EXECUTION_JWT_SECONDS)},
        "logging": {"base_log_folder": str(cfg.logs / "airflow-tasks")},
        "dag_processor": {"refresh_interval": "20", "min_file_process_interval": "30"},
        "scheduler": {"enable_health_check": "True", "scheduler_health_check_server_host": cfg.host},
    })
    text = io.StringIO()
    text.write("# Written by the cdc_local stack manager on every start; edit stack config instead.\n")
    parser.write(text)
    write_private(home / "airflow.cfg", text.getvalue())


def services(cfg: StackConfig, secrets: dict[str, str]) -> list[Service]:
    from cdc_local.stack import envfile

    env = process_environment(cfg, envfile.build(cfg, secrets))
    airflow_bin = str(cfg.venv / "bin" / "airflow")

    def migrate() -> None:
        write_config(cfg, secrets, envfile.AIRFLOW_ADMIN_USER)
        print("    airflow db migrate")
        result = subprocess.run([airflow_bin, "db", "migrate"], env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")

    def api_ready() -> bool:
        return health(cfg)["metadatabase"]["status"] == "healthy"

    started: dict[str, datetime] = {}

    def mark_started(name: str):
        def prepare() -> None:
            started[name] = datetime.now(timezone.utc)
        return prepare

    def component_ready(name: str, key: str):
        """Healthy *and* heartbeating since this start: a stale heartbeat of the previous
        process would otherwise pass the health check for a while."""
        def ready() -> bool:
            report = health(cfg)[key]
            beat = report.get(f"latest_{key}_heartbeat")
            return (report["status"] == "healthy" and beat is not None
                    and datetime.fromisoformat(beat) >= started.get(name, datetime.min.replace(tzinfo=timezone.utc)))
        return ready

    built = [
        Service(
            name="airflow-api-server",
            command=[airflow_bin, "api-server"],
            port=cfg.ports["airflow"],
            ready=api_ready,
            ready_timeout=180,
            environment=env,
            directory=cfg.airflow_home,
            stopwaitsecs=30,
            prepare=migrate,
        )
    ]
    for component in COMPONENTS[1:]:
        built.append(Service(
            name=f"airflow-{component}",
            command=[airflow_bin, component, *SKIP_LOG_SERVER.get(component, ())],
            port=None,
            ready=component_ready(f"airflow-{component}", HEALTH_KEYS[component]),
            prepare=mark_started(f"airflow-{component}"),
            ready_timeout=180,
            environment=env,
            directory=cfg.airflow_home,
            # The scheduler's LocalExecutor workers and their tasks (spark-submit) live in this group.
            stopwaitsecs=60,
        ))
    built.append(Service(
        name="airflow-scheduler-liveness",
        command=[str(cfg.venv / "bin" / "python"), "-m", "cdc_local.stack.scheduler_liveness",
                 "--health-url", f"http://{cfg.host}:{cfg.ports['airflow']}/api/v2/monitor/health",
                 "--alerts-url", env["ALERTS_URL"]],
        port=None,
        ready=lambda: True,
        ready_timeout=10,
        environment=env,
        directory=cfg.airflow_home,
    ))
    return built
