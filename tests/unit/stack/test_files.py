import json
import os
import stat

from cdc_local.stack import envfile, secrets
from cdc_local.stack.config import StackConfig
from cdc_local.stack.service import Service
from cdc_local.stack.supervisor import render_config
from cdc_platform import connections, names, semantics
from cdc_platform.connector_config import render


def test_secrets_are_generated_once_private_and_distinct(tmp_path):
    first = secrets.load_or_create(tmp_path / "secrets")
    again = secrets.load_or_create(tmp_path / "secrets")
    assert first == again
    assert set(first) == set(secrets.SECRET_NAMES)
    assert len(set(first.values())) == len(first)
    path = tmp_path / "secrets" / "stack-secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_env_file_round_trips_values_with_shell_metacharacters(tmp_path):
    values = {"A": "plain", "B": "it's $HOME \"quoted\" `x`", "JSON": json.dumps({"k": "v w"})}
    path = tmp_path / "env"
    envfile.write(path, values)
    assert envfile.read(path) == values
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # and a real shell agrees
    out = os.popen(f". {path} && printf '%s' \"$B\"").read()
    assert out == values["B"]


def test_env_has_the_documented_names_and_matching_airflow_connections(tmp_path):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_PORT_POSTGRES": "15432"})
    values = envfile.build(cfg, secrets.load_or_create(cfg.secrets))
    for key in ("PG_DSN", "KAFKA_BOOTSTRAP", "CONNECT_URL", "CASSANDRA_HOST", "CASSANDRA_PORT", "REDIS_URL",
                "AIRFLOW_URL", "AIRFLOW_USER", "AIRFLOW_PASSWORD"):
        assert values[key], key
    assert ":15432/engagement_db" in values["PG_DSN"]
    pg = json.loads(values[f"AIRFLOW_CONN_{connections.POSTGRES_CONN_ID.upper()}"])
    assert pg["port"] == 15432 and pg["schema"] == names.PG_DATABASE and pg["password"] in values["PG_DSN"]
    kafka = json.loads(values[f"AIRFLOW_CONN_{connections.KAFKA_CONN_ID.upper()}"])
    assert kafka["extra"]["bootstrap.servers"] == values["KAFKA_BOOTSTRAP"]
    spark = json.loads(values[f"AIRFLOW_CONN_{connections.SPARK_CONN_ID.upper()}"])
    assert spark["host"] == names.EMBEDDED_SPARK_MASTER


def test_the_spark_connection_follows_cdc_spark_master(tmp_path):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_SPARK_MASTER": "spark://10.0.0.5:7077"})
    values = envfile.build(cfg, secrets.load_or_create(cfg.secrets))
    spark = json.loads(values[f"AIRFLOW_CONN_{connections.SPARK_CONN_ID.upper()}"])
    assert spark["host"] == "spark://10.0.0.5:7077" and spark["extra"]["deploy-mode"] == "client"


def test_supervisor_config_escapes_percent_and_launches_env_programs(tmp_path):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path)})
    svc_plain = Service(name="plain", command=["/bin/echo", "100%"], port=1, ready=lambda: True)
    svc_env = Service(name="rich", command=["prog", "arg"], port=2, ready=lambda: True,
                      environment={"AIRFLOW_CONN_X": '{"a": "%s"}'}, user="postgres", stopsignal="INT")
    text = render_config(cfg, [svc_plain, svc_env])
    assert "command=/bin/echo 100%%" in text
    assert "[program:rich]" in text and "user=postgres" in text and "stopsignal=INT" in text
    env_json = json.loads((cfg.conf / "rich.env.json").read_text())
    assert env_json == {"AIRFLOW_CONN_X": '{"a": "%s"}'}
    assert str(cfg.conf / "rich.env.json") in text and "autostart=false" in text and "autorestart=true" in text


def test_connector_config_uses_shared_names_and_no_inline_secret():
    config = render("127.0.0.1", 5432, "engagement", "${file:/state/secrets/connect-secrets.properties:postgres.password}")
    assert config["topic.prefix"] == names.TOPIC_PREFIX
    assert config["slot.name"] == names.REPLICATION_SLOT
    assert config["publication.name"] == names.PUBLICATION
    assert config["plugin.name"] == "pgoutput"
    assert config["database.password"] == "${file:/state/secrets/connect-secrets.properties:postgres.password}"
    assert f"public.{names.PG_EVENTS_TABLE}" in config["table.include.list"]
    assert all("@" not in v for v in config.values())
    assert int(config["heartbeat.interval.ms"]) > 0


def test_every_kafka_producer_and_the_broker_take_the_same_message_size(tmp_path):
    """semantics.MAX_MESSAGE_BYTES is the one home of the size; the oversized-value guard in
    Connect shrinks a change well under it, with the placeholder the stream quarantines."""
    import yaml

    config = render("127.0.0.1", 5432, "engagement", "${file:/s:k}")
    limit = str(semantics.MAX_MESSAGE_BYTES)
    assert config["producer.override.max.request.size"] == limit
    assert config["topic.creation.default.max.message.bytes"] == limit
    assert config["transforms.oversized.type"] == "io.github.cdcplatform.connect.OversizedValueGuard"
    assert config["transforms.oversized.max.bytes"] == str(semantics.MAX_CAPTURED_VALUE_BYTES)
    assert config["transforms.oversized.placeholder"] == semantics.OVERSIZED_VALUE_PLACEHOLDER
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path)})
    compose = yaml.safe_load((cfg.repo_root / "docker" / "compose.yaml").read_text())
    assert compose["services"]["kafka"]["environment"]["KAFKA_MESSAGE_MAX_BYTES"] == limit
    assert compose["services"]["connect"]["environment"]["CONNECT_PRODUCER_MAX_REQUEST_SIZE"] == limit


def test_connector_config_refuses_a_literal_password():
    import pytest

    with pytest.raises(ValueError, match="config-provider reference"):
        render("127.0.0.1", 5432, "engagement", "hunter2")


def test_launcher_drops_inherited_airflow_settings(tmp_path):
    import subprocess
    import sys

    from cdc_local.stack import launch

    env_json = tmp_path / "env.json"
    env_json.write_text(json.dumps({"AIRFLOW_HOME": "/stack/airflow", "FROM_FILE": "1"}))
    inherited = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/other.db",
                 "AIRFLOW_HOME": "/elsewhere", "KEEP_ME": "yes"}
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    out = subprocess.run([sys.executable, launch.__file__, str(env_json), "--", sys.executable, "-c", code],
                         env=inherited, capture_output=True, text=True, check=True).stdout
    seen = json.loads(out)
    assert seen["AIRFLOW_HOME"] == "/stack/airflow" and seen["FROM_FILE"] == "1" and seen["KEEP_ME"] == "yes"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in seen


def test_secret_files_are_private_from_creation_whatever_the_umask(tmp_path):
    import os
    import stat

    from cdc_local.stack.secrets import write_private

    path = tmp_path / "secret.properties"
    path.write_text("old, world-readable")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_private(path, "password=s3cret\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "password=s3cret\n"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.properties"]


def test_every_stack_secret_file_is_written_privately():
    """No secret-bearing file of the stack is written with write_text and chmodded after."""
    from pathlib import Path

    stack = Path(__file__).resolve().parents[3] / "include" / "cdc_local" / "stack"
    offenders = [str(p.relative_to(stack)) for p in stack.rglob("*.py") if ".chmod(0o600)" in p.read_text()
                 or "os.chmod(tmp, 0o600)" in p.read_text()]
    assert offenders == []
