"""A Spark standalone cluster (one master, one worker) from the pyspark wheel, on loopback.

Not part of ``make up``: the embedded stack runs the stream in local mode. This starts the
cluster a stream can be pointed at (``CDC_SPARK_MASTER=spark://127.0.0.1:7077``, then restart
the Airflow scheduler so its tasks see the new ``spark_default`` connection):

    python -m cdc_local.stack.spark_standalone up|down|status

The worker's directory (executor logs, the files the driver ships) is under the state dir.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cdc_platform.polling import wait_until

from cdc_local.stack.config import StackConfig
from cdc_local.stack.service import StackError, tail, wait_ready

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


@dataclass(frozen=True)
class Cluster:
    master_url: str
    master_ui: str
    worker_ui: str

    def master_state(self) -> dict:
        """The master's own JSON view (workers, active and completed applications)."""
        import requests

        response = requests.get(f"{self.master_ui}/json/", timeout=5)
        response.raise_for_status()
        return response.json()

    def worker_state(self) -> dict:
        import requests

        response = requests.get(f"{self.worker_ui}/json/", timeout=5)
        response.raise_for_status()
        return response.json()


def cluster(cfg: StackConfig) -> Cluster:
    return Cluster(master_url=f"spark://{cfg.host}:{cfg.ports['spark_master']}",
                   master_ui=f"http://{cfg.host}:{cfg.ports['spark_master_ui']}",
                   worker_ui=f"http://{cfg.host}:{cfg.ports['spark_worker_ui']}")


def _spark_class(cfg: StackConfig) -> Path:
    from cdc_local.stack.envfile import spark_home

    home = spark_home(cfg)
    if not home:
        raise StackError("pyspark is not installed in the stack's venv; run `make install`")
    return Path(home) / "bin" / "spark-class"


def _pid_file(cfg: StackConfig, role: str) -> Path:
    return cfg.run / f"spark-{role}.pid"


def _environment(cfg: StackConfig) -> dict[str, str]:
    from cdc_local.stack.envfile import spark_home

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env.update({
        "SPARK_HOME": spark_home(cfg),
        # Every port the master, the worker and its executors open binds to loopback.
        "SPARK_LOCAL_IP": cfg.host,
        "SPARK_NO_DAEMONIZE": "1",
        "PATH": f"{cfg.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
    })
    return env


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _start(cfg: StackConfig, role: str, argv: list[str]) -> int:
    pid_file = _pid_file(cfg, role)
    running = _alive(pid_file)
    if running:
        return running
    log = cfg.logs / f"spark-{role}.log"
    cfg.logs.mkdir(parents=True, exist_ok=True)
    cfg.run.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([str(_spark_class(cfg)), *argv], stdout=out, stderr=subprocess.STDOUT,
                                env=_environment(cfg), start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid


def up(cfg: StackConfig, cores: int = 2, memory: str = "2g", timeout: float = 120) -> Cluster:
    """Start the master and one worker (idempotent) and wait until the worker is ALIVE."""
    found = cluster(cfg)
    work_dir = cfg.data / "spark-work"
    work_dir.mkdir(parents=True, exist_ok=True)
    master = _start(cfg, "master", [MASTER_CLASS, "--host", cfg.host, "--port", str(cfg.ports["spark_master"]),
                                    "--webui-port", str(cfg.ports["spark_master_ui"])])
    wait_ready(lambda: found.master_state()["status"] == "ALIVE", "spark master", timeout,
               cfg.logs / "spark-master.log", is_alive=lambda: _alive(_pid_file(cfg, "master")) == master)
    worker = _start(cfg, "worker", [WORKER_CLASS, found.master_url, "--host", cfg.host,
                                    "--webui-port", str(cfg.ports["spark_worker_ui"]), "--cores", str(cores),
                                    "--memory", memory, "--work-dir", str(work_dir)])
    wait_ready(lambda: any(w["state"] == "ALIVE" for w in found.master_state()["workers"]), "spark worker",
               timeout, cfg.logs / "spark-worker.log", is_alive=lambda: _alive(_pid_file(cfg, "worker")) == worker)
    return found


def down(cfg: StackConfig, timeout: float = 30) -> None:
    for role in ("worker", "master"):
        pid_file = _pid_file(cfg, role)
        pid = _alive(pid_file)
        if pid:
            os.killpg(pid, signal.SIGTERM)
            try:
                wait_until(lambda: not _alive(pid_file), timeout, 0.3, f"the spark {role} to stop")
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--memory", default="2g")
    args = parser.parse_args(argv)
    cfg = StackConfig.load()
    if args.command == "up":
        try:
            found = up(cfg, args.cores, args.memory)
        except StackError as exc:
            print(f"error: {exc}\n{tail(cfg.logs / 'spark-master.log', 10)}")
            return 1
        print(f"spark master {found.master_url} (UI {found.master_ui}), one worker ALIVE.\n"
              f"Point the stream at it: CDC_SPARK_MASTER={found.master_url}, then restart airflow-scheduler.")
    elif args.command == "down":
        down(cfg)
        print("spark standalone cluster stopped")
    else:
        try:
            print(json.dumps(cluster(cfg).master_state(), indent=1))
        except Exception as exc:  # noqa: BLE001 - down is an answer too
            print(f"not running ({type(exc).__name__})")
            return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
