"""The retry policy: which failures are retried, and how long the client waits."""
from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_platform.delivery.rest_client import RetryPolicy, is_retryable_status


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408, 429])
def test_server_errors_timeouts_and_throttling_are_retryable(status):
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_other_client_errors_are_not_retryable(status):
    assert not is_retryable_status(status)


def test_ceiling_doubles_until_the_cap():
    policy = RetryPolicy(base_backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_huge_attempt_numbers_stay_at_the_cap():
    assert RetryPolicy(base_backoff_s=1.0, max_backoff_s=30.0).ceiling(10_000) == 30.0


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=60.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_stays_within_its_jitter_band(attempt, base, cap, jitter, seed):
    policy = RetryPolicy(base_backoff_s=base, max_backoff_s=cap, jitter=jitter)
    ceiling = policy.ceiling(attempt)
    delay = policy.backoff(attempt, random.Random(seed))
    assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9


def test_jitter_spreads_delays():
    policy = RetryPolicy(base_backoff_s=1.0, max_backoff_s=10.0, jitter=1.0)
    rng = random.Random(7)
    assert len({round(policy.backoff(3, rng), 6) for _ in range(20)}) > 10


def test_retry_after_stretches_the_delay_but_not_past_the_cap():
    policy = RetryPolicy(base_backoff_s=0.1, max_backoff_s=5.0, jitter=0.0)
    assert policy.delay(1, retry_after_s=2.0) == 2.0
    assert policy.delay(1, retry_after_s=120.0) == 5.0
    assert policy.delay(1, retry_after_s=None) == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs", [
    {"max_attempts": 0}, {"base_backoff_s": -1.0}, {"max_backoff_s": -0.1}, {"jitter": 1.5},
])
def test_nonsense_policies_are_refused(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_attempt_numbers_start_at_one():
    with pytest.raises(ValueError):
        RetryPolicy().ceiling(0)
