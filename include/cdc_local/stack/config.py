"""Where the stack lives and which ports it uses.

Every path is under one state dir (default ``<repo>/.stack``, or ``$CDC_STATE_DIR``).
Ports have the usual defaults and are overridden by ``CDC_PORT_<NAME>`` in the
environment or in ``<repo>/stack.env`` (a ``KEY=VALUE`` file, gitignored); so are the heaps
(``CDC_HEAP_<NAME>``) and the stream's Spark master (``CDC_SPARK_MASTER``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cdc_platform import names

REPO_ROOT = Path(__file__).resolve().parents[3]

DEFAULT_PORTS: dict[str, int] = {
    "postgres": 5432,
    "redis": 6379,
    "kafka": 9092,
    "kafka_controller": 9093,
    # A second broker listener that requires a SASL/PLAIN login, so the stream's handling of a
    # secured Kafka connection (cdc_stream.kafka_options) is tested against a real broker.
    "kafka_sasl": 9094,
    "connect": 8083,
    "cassandra": 9042,
    "cassandra_storage": 7000,
    "cassandra_jmx": 7199,
    "airflow": 8080,
    "alerts": 8091,
    "restapi": 8090,
    # A Spark standalone cluster, started only on demand (cdc_local.stack.spark_standalone).
    "spark_master": 7077,
    "spark_master_ui": 18080,
    "spark_worker_ui": 18081,
}

# Heaps are deliberately small so the whole stack fits in about 6 GiB on 2 cores.
DEFAULT_HEAPS: dict[str, str] = {
    "kafka": "384m",
    "connect": "384m",
    "cassandra": "768m",
}

MIN_JAVA_MAJOR = 17
MIN_FREE_DISK_GIB = 3.0


def _read_kv_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _overrides(environ: dict[str, str]) -> dict[str, str]:
    merged = _read_kv_file(REPO_ROOT / "stack.env")
    merged.update({k: v for k, v in environ.items() if k.startswith("CDC_")})
    return merged


def _port(overrides: dict[str, str], name: str) -> int:
    key = f"CDC_PORT_{name.upper()}"
    value = overrides.get(key)
    if value is None:
        return DEFAULT_PORTS[name]
    try:
        port = int(value)
    except ValueError:
        raise SystemExit(f"{key}={value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise SystemExit(f"{key}={port} is outside 1..65535")
    return port


@dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    ports: dict[str, int]
    heaps: dict[str, str]
    repo_root: Path = REPO_ROOT
    host: str = "127.0.0.1"
    java: str = "java"
    # The stream's Spark master (the spark_default connection): local mode by default;
    # CDC_SPARK_MASTER=spark://host:port, k8s://... or yarn runs it on a cluster.
    spark_master: str = names.EMBEDDED_SPARK_MASTER
    # The cluster settings set here (cdc_platform.cluster), passed on to Airflow and its tasks.
    cluster_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, environ: dict[str, str] | None = None) -> "StackConfig":
        overrides = _overrides(dict(os.environ if environ is None else environ))
        state_dir = Path(overrides.get("CDC_STATE_DIR", REPO_ROOT / ".stack")).resolve()
        ports = {name: _port(overrides, name) for name in DEFAULT_PORTS}
        heaps = {
            name: overrides.get(f"CDC_HEAP_{name.upper()}", default)
            for name, default in DEFAULT_HEAPS.items()
        }
        java_home = overrides.get("CDC_JAVA_HOME") or os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else "java"
        spark_master = overrides.get("CDC_SPARK_MASTER") or names.EMBEDDED_SPARK_MASTER
        from cdc_platform.cluster import ENV_KEYS, ClusterSettings, ClusterSettingsError

        cluster_env = {k: v for k, v in overrides.items() if k in ENV_KEYS and v}
        try:
            ClusterSettings.from_env(cluster_env)
        except ClusterSettingsError as exc:
            raise SystemExit(f"stack.env or environment: {exc}") from None
        return cls(state_dir=state_dir, ports=ports, heaps=heaps, java=java, spark_master=spark_master,
                   cluster_env=cluster_env)

    # Layout of the state dir.
    @property
    def venv(self) -> Path:
        return self.state_dir / "venv"

    @property
    def jars(self) -> Path:
        return self.state_dir / "jars"

    @property
    def data(self) -> Path:
        return self.state_dir / "data"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def conf(self) -> Path:
        return self.state_dir / "conf"

    @property
    def run(self) -> Path:
        return self.state_dir / "run"

    @property
    def secrets(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def checkpoints(self) -> Path:
        return self.state_dir / "checkpoints"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "env"

    @property
    def supervisor_socket(self) -> Path:
        return self.run / "supervisor.sock"

    def log_file(self, program: str) -> Path:
        return self.logs / f"{program}.log"
