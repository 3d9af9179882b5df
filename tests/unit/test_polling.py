"""wait_until: what it returns, when it gives up, and what it says then."""
from __future__ import annotations

import time

import pytest

from cdc_platform.polling import wait_until


def answers(*values):
    """A probe that gives ``values`` in turn, then the last one forever; counts its calls."""
    calls = []

    def probe():
        calls.append(time.monotonic())
        return values[min(len(calls), len(values)) - 1]

    return probe, calls


def test_the_first_value_that_holds_is_returned():
    probe, calls = answers(None, 0, "", "ready", "later")
    assert wait_until(probe, 5, interval_s=0.01) == "ready"
    assert len(calls) == 4


def test_until_decides_which_value_holds():
    probe, _ = answers({"state": "PAUSED"}, {"state": "STOPPED"})
    assert wait_until(probe, 5, 0.01, until=lambda s: s["state"] == "STOPPED") == {"state": "STOPPED"}


def test_a_timeout_names_what_was_awaited_and_the_last_value_seen():
    probe, calls = answers("PAUSED", "STARTING")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"after 0.2s waiting for the connector RUNNING; last seen: 'STARTING'"):
        wait_until(probe, 0.2, 0.05, "the connector RUNNING", until=lambda s: s == "RUNNING")
    assert calls[-1] - started >= 0.2  # the last look is at the deadline or after it
    assert len(calls) >= 3


def test_a_zero_timeout_still_looks_once():
    probe, calls = answers(True)
    assert wait_until(probe, 0) is True
    assert len(calls) == 1


def test_the_caller_chooses_the_error_type():
    class ServiceError(RuntimeError):
        pass

    with pytest.raises(ServiceError, match="waiting for the service"):
        wait_until(lambda: False, 0, what="the service", error=ServiceError)


def test_an_exception_from_the_probe_ends_the_wait_at_once():
    calls = []

    def probe():
        calls.append(1)
        raise ValueError("connector FAILED")

    with pytest.raises(ValueError, match="connector FAILED"):
        wait_until(probe, 5, 0.01)
    assert calls == [1]
