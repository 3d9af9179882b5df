"""The restapi stack service and the connection details other parts use to reach it."""
from __future__ import annotations

import json

from cdc_local.stack import envfile, secrets
from cdc_local.stack.config import StackConfig
from cdc_local.stack.services import build_all, restapi
from cdc_local.stack.supervisor import render_config
from cdc_platform import connections


def test_service_runs_the_app_with_the_token_only_in_its_environment(tmp_path):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_PORT_RESTAPI": "18090"})
    stack_secrets = secrets.load_or_create(cfg.secrets)
    svc = restapi.service(cfg, stack_secrets)
    assert svc.name == "restapi" and svc.port == 18090
    assert svc.command[1:3] == ["-m", "cdc_local.restapi"]
    assert ["--port", "18090"] == svc.command[svc.command.index("--port"):][:2]
    assert svc.command[svc.command.index("--db") + 1] == str(cfg.data / "restapi" / "events.db")
    assert svc.environment["API_TOKEN"] == stack_secrets["api_token"]
    assert svc.environment["PYTHONPATH"] == str(cfg.repo_root / "include")
    text = render_config(cfg, [svc])
    assert stack_secrets["api_token"] not in text
    svc.prepare()
    assert (cfg.data / "restapi").is_dir()


def test_restapi_is_part_of_the_stack(tmp_path):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path)})
    assert "restapi" in [s.name for s in build_all(cfg, secrets.load_or_create(cfg.secrets))]


def test_env_and_airflow_connection_reach_the_api(tmp_path):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_PORT_RESTAPI": "18090"})
    stack_secrets = secrets.load_or_create(cfg.secrets)
    values = envfile.build(cfg, stack_secrets)
    assert values["API_URL"] == f"http://{cfg.host}:18090"
    assert values["API_TOKEN"] == stack_secrets["api_token"]
    conn = json.loads(values[f"AIRFLOW_CONN_{connections.REST_API_CONN_ID.upper()}"])
    assert (conn["conn_type"], conn["host"], conn["port"], conn["schema"]) == ("http", cfg.host, 18090, "http")
    assert conn["password"] == stack_secrets["api_token"]
