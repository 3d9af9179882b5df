"""Polling with a deadline: tests wait for conditions, never for fixed times."""
from __future__ import annotations

import time


def poll_until(check, timeout: float, what: str = "condition", interval: float = 0.5):
    """Call ``check`` until it returns something truthy and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
