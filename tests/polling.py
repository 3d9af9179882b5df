"""Polling with a deadline: tests wait for conditions, never for fixed times."""
from __future__ import annotations

from cdc_platform.polling import wait_until


def poll_until(check, timeout: float, what: str = "condition", interval: float = 0.5):
    """Call ``check`` until it returns something truthy and return that; after ``timeout`` s the
    test fails (an AssertionError, which a test may catch to go on without the condition)."""
    return wait_until(check, timeout, interval, what, error=AssertionError)
