"""The sourceable ``.stack/env``: how users, scripts, tests and Airflow reach every service.

Airflow connections (``AIRFLOW_CONN_*``) are derived from the same values, so the
two can never disagree.
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from cdc_platform import connections as conn_ids
from cdc_platform import names
from cdc_platform.cassandra_cluster import CASSANDRA_DRIVER_EXTRA

from cdc_local.stack.config import StackConfig
from cdc_local.stack.secrets import write_private
from cdc_local.stack.services.postgres import ENGAGEMENT_DB, ENGAGEMENT_USER
from cdc_local.stack.services.kafka import SASL_USER as KAFKA_SASL_USER

AIRFLOW_ADMIN_USER = "admin"


def spark_kafka_jars(cfg: StackConfig) -> str:
    return ",".join(sorted(str(p) for p in (cfg.jars / "spark").glob("*.jar")))


def spark_home(cfg: StackConfig) -> str:
    """The pyspark wheel is a complete Spark distribution; spark-submit needs to be told where."""
    found = sorted(cfg.venv.glob("lib/python3*/site-packages/pyspark"))
    return str(found[-1]) if found else ""


def _conn_env(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def build(cfg: StackConfig, secrets: dict[str, str]) -> dict[str, str]:
    host = cfg.host
    ports = cfg.ports
    values = {
        "CDC_STATE_DIR": str(cfg.state_dir),
        "CDC_REPO_ROOT": str(cfg.repo_root),
        "PG_HOST": host,
        "PG_PORT": str(ports["postgres"]),
        "PG_DATABASE": ENGAGEMENT_DB,
        "PG_USER": ENGAGEMENT_USER,
        "PG_PASSWORD": secrets["engagement_password"],
        "PG_DSN": (f"postgresql://{ENGAGEMENT_USER}:{quote(secrets['engagement_password'], safe='')}"
                   f"@{host}:{ports['postgres']}/{ENGAGEMENT_DB}"),
        "KAFKA_BOOTSTRAP": f"{host}:{ports['kafka']}",
        # The listener that requires a login (tests of a secured Kafka connection).
        "KAFKA_SASL_BOOTSTRAP": f"{host}:{ports['kafka_sasl']}",
        "KAFKA_SASL_USER": KAFKA_SASL_USER,
        "KAFKA_SASL_PASSWORD": secrets["kafka_sasl_password"],
        "CONNECT_URL": f"http://{host}:{ports['connect']}",
        "CASSANDRA_HOST": host,
        "CASSANDRA_PORT": str(ports["cassandra"]),
        "CASSANDRA_USER": names.CASSANDRA_ADMIN_ROLE,
        "CASSANDRA_PASSWORD": secrets["cassandra_admin_password"],
        "CASSANDRA_SINK_USER": names.CASSANDRA_SINK_ROLE,
        "CASSANDRA_SINK_PASSWORD": secrets["cassandra_sink_password"],
        "REDIS_URL": f"redis://:{quote(secrets['redis_password'], safe='')}@{host}:{ports['redis']}/0",
        "AIRFLOW_URL": f"http://{host}:{ports['airflow']}",
        "AIRFLOW_USER": AIRFLOW_ADMIN_USER,
        "AIRFLOW_PASSWORD": secrets["airflow_admin_password"],
        "AIRFLOW_HOME": str(cfg.airflow_home),
        "ALERTS_URL": f"http://{host}:{ports['alerts']}/alerts",
        "API_URL": f"http://{host}:{ports['restapi']}",
        "API_TOKEN": secrets["api_token"],
        "API_ADMIN_TOKEN": secrets["api_admin_token"],
        "SPARK_HOME": spark_home(cfg),
        "PYSPARK_PYTHON": str(cfg.venv / "bin" / "python"),
        "SPARK_SUBMIT": str(cfg.venv / "bin" / "spark-submit"),
        "SPARK_KAFKA_JARS": spark_kafka_jars(cfg),
        "SPARK_CHECKPOINT_ROOT": str(cfg.checkpoints),
    }
    connections = airflow_connections(
        lambda service: (host, ports[service]), lambda name: secrets[name],
        str(connect_secrets_file(cfg.secrets)), spark_master=cfg.spark_master)
    for conn_id, conn in connections.items():
        values[_conn_env(conn_id)] = json.dumps(conn, separators=(",", ":"))
    values.update(cfg.cluster_env)
    return values


# Where each connection points: the local stack passes its host and ports, the compose file
# its service names; secrets are values here and ${VARIABLES} there (cdc_local.stack.compose).
Endpoint = Callable[[str], tuple[str, int]]
Secret = Callable[[str], str]

CONNECT_SECRETS_FILE_NAME = "connect-secrets.properties"


def connect_secrets_file(secrets_dir) -> Path:
    """Connector configs reference secrets as ${file:<this path>:<key>}; never inline."""
    return Path(secrets_dir) / CONNECT_SECRETS_FILE_NAME


def airflow_connections(endpoint: Endpoint, secret: Secret, connect_secrets_path: str,
                        spark_master: str = names.EMBEDDED_SPARK_MASTER) -> dict[str, dict]:
    """Every Airflow connection the DAGs and the stream use, by conn id: the one definition of
    the local stack's ``AIRFLOW_CONN_*`` and the compose deployment's."""
    def at(service: str) -> dict:
        host, port = endpoint(service)
        return {"host": host, "port": port}

    kafka_host, kafka_port = endpoint("kafka")
    return {
        conn_ids.POSTGRES_CONN_ID: {
            "conn_type": "postgres", **at("postgres"), "schema": ENGAGEMENT_DB,
            "login": ENGAGEMENT_USER, "password": secret("engagement_password"),
        },
        conn_ids.KAFKA_CONN_ID: {
            "conn_type": "kafka", "extra": {"bootstrap.servers": f"{kafka_host}:{kafka_port}"},
        },
        conn_ids.KAFKA_CONNECT_CONN_ID: {
            "conn_type": "http", **at("connect"), "schema": "http",
            # Connectors on this worker log in to the database as their own role, with a password
            # referenced through a config provider (it never enters Connect's config topic).
            "extra": {"database_user": names.PG_CDC_ROLE,
                      "database_password_ref": f"${{file:{connect_secrets_path}:postgres.password}}"},
        },
        conn_ids.CASSANDRA_CONN_ID: {
            "conn_type": "cassandra", **at("cassandra"),
            "login": names.CASSANDRA_ADMIN_ROLE, "password": secret("cassandra_admin_password"),
            "extra": CASSANDRA_DRIVER_EXTRA,
        },
        conn_ids.CASSANDRA_SINK_CONN_ID: {
            "conn_type": "cassandra", **at("cassandra"),
            "login": names.CASSANDRA_SINK_ROLE, "password": secret("cassandra_sink_password"),
            "extra": CASSANDRA_DRIVER_EXTRA,
        },
        conn_ids.REDIS_CONN_ID: {
            "conn_type": "redis", **at("redis"), "password": secret("redis_password"), "extra": {"db": 0},
        },
        conn_ids.ALERTS_CONN_ID: {
            "conn_type": "http", **at("alerts"), "schema": "http", "extra": {"endpoint": "/alerts"},
        },
        conn_ids.REST_API_CONN_ID: {
            "conn_type": "http", **at("restapi"), "schema": "http", "password": secret("api_token"),
        },
        conn_ids.SPARK_CONN_ID: {
            # More task slots than cores: a sink task holds its slot while it waits on Cassandra,
            # Redis or HTTP, and the other queries' tasks must not queue behind it.
            "conn_type": "spark", "host": spark_master,
            "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
        },
    }


def write(path: Path, values: dict[str, str]) -> None:
    lines = ["# Written by `make up`; regenerated on every start. Source it: `. .stack/env`."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    write_private(path, "\n".join(lines) + "\n")


def read(path: Path) -> dict[str, str]:
    """Parse a file written by :func:`write` (values are shell-quoted)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, raw = line[len("export "):].partition("=")
            parts = shlex.split(raw)
            values[key] = parts[0] if parts else ""
    return values


def read_or_exit(cfg: StackConfig, hint: str = "run `make up` first") -> dict[str, str]:
    """The stack's env for a command-line tool; exits with a clear message when the stack was never started."""
    import sys

    values = read(cfg.env_file)
    if not values:
        print(f"error: {cfg.env_file} missing; {hint}", file=sys.stderr)
        raise SystemExit(2)
    return values
