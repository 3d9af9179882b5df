"""Redis with a password and append-only persistence under the state dir."""
from __future__ import annotations

import os
import shutil

from cdc_local.stack.config import StackConfig
from cdc_local.stack.secrets import write_private
from cdc_local.stack.service import Service, StackError


def service(cfg: StackConfig, secrets: dict[str, str]) -> Service:
    port = cfg.ports["redis"]
    data_dir = cfg.data / "redis"
    conf_path = cfg.conf / "redis.conf"
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"

    def prepare() -> None:
        if not os.path.exists(binary):
            raise StackError("redis-server not found; run `make install` (installs Debian's redis-server).")
        data_dir.mkdir(parents=True, exist_ok=True)
        conf_path.parent.mkdir(parents=True, exist_ok=True)
        write_private(conf_path, "\n".join([
                f"bind {cfg.host}",
                f"port {port}",
                "protected-mode yes",
                f"requirepass {secrets['redis_password']}",
                f"dir {data_dir}",
                "daemonize no",
                "appendonly yes",
                "appendfsync everysec",
                "save 300 10",
                "maxmemory 512mb",
                # Aggregates are the product; evicting them silently would be data loss.
                "maxmemory-policy noeviction",
                "loglevel notice",
                'logfile ""',
            ]) + "\n")

    def ready() -> bool:
        import redis

        return bool(redis.Redis(host=cfg.host, port=port, password=secrets["redis_password"],
                                socket_timeout=2).ping())

    return Service(
        name="redis",
        command=[binary, str(conf_path)],
        port=port,
        ready=ready,
        ready_timeout=30,
        prepare=prepare,
    )
