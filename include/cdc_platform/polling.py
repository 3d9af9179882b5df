"""Waiting with a deadline for a state to be reached: the one loop behind the platform's waits."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], timeout_s: float, interval_s: float = 1.0, what: str = "condition", *,
               until: Callable[[T], object] = bool,
               error: Callable[[str], BaseException] = TimeoutError) -> T:
    """Call ``probe`` every ``interval_s`` until ``until(value)`` holds, and return that value.

    The probe always runs once, and its last run is at or after the deadline; then ``error``
    (TimeoutError, or the caller's own error type) is raised, naming ``what`` and the last value.
    An exception from the probe ends the wait: a probe raises when the state it sees is hopeless.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout_s:g}s waiting for {what}; last seen: {value!r}")
        time.sleep(interval_s)
