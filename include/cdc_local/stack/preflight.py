"""Checks that make `up` refuse with a clear message instead of a stack trace."""
from __future__ import annotations

import re
import shutil
import subprocess

from cdc_local.stack.config import MIN_FREE_DISK_GIB, MIN_JAVA_MAJOR, StackConfig
from cdc_local.stack.service import Service, StackError, port_open


def java_major(java: str) -> int:
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise StackError(f"Java not found ({java}); install Java {MIN_JAVA_MAJOR}+ or set JAVA_HOME.") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise StackError(f"cannot tell the Java version from `{java} -version`:\n{result.stderr}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 else major


def check_java(cfg: StackConfig) -> int:
    major = java_major(cfg.java)
    if major < MIN_JAVA_MAJOR:
        raise StackError(f"Java {major} is too old: Kafka 4 and Cassandra 5 need Java {MIN_JAVA_MAJOR}+. "
                         "Install it or set JAVA_HOME / CDC_JAVA_HOME.")
    return major


def check_disk(cfg: StackConfig) -> float:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    free_gib = shutil.disk_usage(cfg.state_dir).free / 2**30
    if free_gib < MIN_FREE_DISK_GIB:
        raise StackError(f"only {free_gib:.1f} GiB free under {cfg.state_dir}; the stack needs at least "
                         f"{MIN_FREE_DISK_GIB:.0f} GiB. Free space or set CDC_STATE_DIR elsewhere.")
    return free_gib


def port_owner(port: int) -> str:
    try:
        import psutil

        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline()[:3])[:80]})"
    except Exception:  # noqa: BLE001 - only used to enrich the message
        pass
    return "another process"


def check_ports_free(cfg: StackConfig, svc: Service) -> None:
    for port in (svc.port, *svc.extra_ports):
        if port is not None and port_open(cfg.host, port):
            env_key = next((f"CDC_PORT_{k.upper()}" for k, v in cfg.ports.items() if v == port), "CDC_PORT_...")
            raise StackError(f"port {port} needed by {svc.name} is already in use by {port_owner(port)}. "
                             f"Stop it, or choose another port: {env_key}=<port> make up")
