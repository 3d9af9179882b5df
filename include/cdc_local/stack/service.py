"""What the stack manager knows about one supervised program."""
from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cdc_local.stack.config import StackConfig


class StackError(RuntimeError):
    """A failure the user can act on; printed without a traceback."""


@dataclass
class Service:
    name: str
    command: list[str]
    port: int | None
    ready: Callable[[], bool]
    ready_timeout: float = 120.0
    environment: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None
    user: str | None = None
    stopsignal: str = "TERM"
    stopwaitsecs: int = 30
    # Runs before the program starts (write config, init data dirs). Idempotent.
    prepare: Callable[[], None] | None = None
    # Runs once the program is ready (create roles, databases...). Idempotent.
    after_ready: Callable[[], None] | None = None
    # Extra ports the program binds, checked before start.
    extra_ports: tuple[int, ...] = ()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return f"(no log at {path})"
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        text = fh.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    log_file: Path | None = None,
    is_alive: Callable[[], bool] | None = None,
    interval: float = 1.0,
) -> float:
    """Poll ``check`` until it is true; return the seconds waited.

    Prints a progress line every 10 s. On timeout, or when ``is_alive`` says the
    process died, raises StackError with the tail of the program's log. A program that is
    starting fails its probes in many ways, so unlike ``polling.wait_until`` errors are retried.
    """
    start = time.monotonic()
    next_note = start + 10
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # noqa: BLE001 - readiness probes fail in many ways while starting
            pass
        now = time.monotonic()
        if is_alive is not None and not is_alive():
            raise StackError(f"{what} exited while starting. Last log lines:\n{tail(log_file) if log_file else ''}")
        if now - start > timeout:
            raise StackError(
                f"{what} not ready after {timeout:.0f}s. Last log lines of {log_file}:\n"
                f"{tail(log_file) if log_file else ''}"
            )
        if now >= next_note:
            print(f"    ... waiting for {what} ({now - start:.0f}s)", file=sys.stderr, flush=True)
            next_note = now + 10
        time.sleep(interval)


def java_command(cfg: StackConfig, heap: str, classpath: str, main: str, *args: str, jvm_opts: list[str] | None = None) -> list[str]:
    return [
        cfg.java,
        "-Xms128m",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=200",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        *(jvm_opts or []),
        "-cp",
        classpath,
        main,
        *args,
    ]
