"""post_batch and deliver against a scripted HTTP session (pure client logic, no service)."""
from __future__ import annotations

import json
import math

import pytest
import requests

from cdc_platform.delivery.rest_client import (
    CircuitBreaker,
    DeliveryItem,
    RetryPolicy,
    deliver,
    post_batch,
)
from cdc_platform.delivery.rest_contract import BATCH_PATH

API = "http://api.test"
FAST = RetryPolicy(max_attempts=3, base_backoff_s=0.01, max_backoff_s=0.05)


class _Response:
    def __init__(self, status: int, text: str = "", headers: dict | None = None):
        self.status_code = status
        self.text = text
        self.headers = headers or {}


class ScriptedSession:
    """Answers each POST with the next scripted outcome, or with ``rule(keys)``."""

    def __init__(self, script=None, rule=None):
        self.script = list(script or [])
        self.rule = rule
        self.calls: list[dict] = []

    def post(self, url, data, timeout, headers):
        body = json.loads(data)
        self.calls.append({"url": url, "headers": headers, "keys": [e["idempotency_key"] for e in body["events"]],
                           "body": body})
        outcome = self.script.pop(0) if self.script else self.rule([e["idempotency_key"] for e in body["events"]])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def items(n: int, prefix: str = "k") -> list[DeliveryItem]:
    return [DeliveryItem(f"{prefix}{i}", {"id": i, "position": 100 + i}) for i in range(n)]


def test_success_delivers_every_item_in_one_authenticated_post():
    session = ScriptedSession([_Response(200)])
    sleeps = []
    result = post_batch(session, API + "/", "tok", items(3), 2.0, policy=FAST, sleep=sleeps.append)
    assert [i.idempotency_key for i in result.delivered] == ["k0", "k1", "k2"]
    assert result.failed == []
    call = session.calls[0]
    assert call["url"] == API + BATCH_PATH
    assert call["headers"]["Authorization"] == "Bearer tok"
    assert call["body"]["events"][1] == {"idempotency_key": "k1", "event": {"id": 1, "position": 101}}
    assert sleeps == []


def test_5xx_is_retried_with_backoff_then_succeeds():
    session = ScriptedSession([_Response(503), _Response(502), _Response(200)])
    sleeps = []
    result = post_batch(session, API, "tok", items(2), 2.0, policy=FAST, sleep=sleeps.append)
    assert len(result.delivered) == 2 and not result.failed
    assert len(session.calls) == 3 and len(sleeps) == 2
    assert all(0 <= s <= FAST.max_backoff_s for s in sleeps)


def test_retryable_failures_exhaust_the_attempts():
    session = ScriptedSession(rule=lambda keys: _Response(503, "down"))
    result = post_batch(session, API, "tok", items(2), 2.0, policy=FAST, sleep=lambda s: None)
    assert result.delivered == []
    assert [(f.attempts, f.retryable) for f in result.failed] == [(3, True), (3, True)]
    assert result.failed[0].error == "HTTP 503: down"


@pytest.mark.parametrize("exc, text", [
    (requests.ConnectTimeout("slow"), "timeout"),
    (requests.ReadTimeout("slow"), "timeout"),
    (requests.ConnectionError("refused"), "connection error"),
])
def test_timeouts_and_connection_errors_are_retried(exc, text):
    session = ScriptedSession(rule=lambda keys: exc)
    result = post_batch(session, API, "tok", items(1), 0.5, policy=FAST, sleep=lambda s: None)
    assert len(session.calls) == FAST.max_attempts
    assert result.failed[0].retryable and text in result.failed[0].error


@pytest.mark.parametrize("status", [408, 429])
def test_408_and_429_are_retried(status):
    session = ScriptedSession([_Response(status), _Response(200)])
    result = post_batch(session, API, "tok", items(1), 1.0, policy=FAST, sleep=lambda s: None)
    assert len(result.delivered) == 1 and len(session.calls) == 2


def test_retry_after_header_is_honoured_within_the_cap():
    session = ScriptedSession([_Response(429, headers={"Retry-After": "0.04"}), _Response(200)])
    sleeps = []
    post_batch(session, API, "tok", items(1), 1.0, policy=RetryPolicy(base_backoff_s=0.001, max_backoff_s=1.0),
               sleep=sleeps.append)
    assert sleeps[0] == pytest.approx(0.04)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_request_level_4xx_fails_everything_at_once_without_retry(status):
    session = ScriptedSession(rule=lambda keys: _Response(status, "no"))
    result = post_batch(session, API, "tok", items(4), 1.0, policy=FAST, sleep=lambda s: None)
    assert len(session.calls) == 1
    assert [(f.attempts, f.retryable) for f in result.failed] == [(1, False)] * 4


def test_a_poison_item_is_isolated_by_splitting_the_batch():
    def reject_poison(keys):
        return _Response(422, "bad item") if "k5" in keys else _Response(200)

    session = ScriptedSession(rule=reject_poison)
    result = post_batch(session, API, "tok", items(8), 1.0, policy=FAST, sleep=lambda s: None)
    assert sorted(i.idempotency_key for i in result.delivered) == sorted(f"k{i}" for i in range(8) if i != 5)
    [failed] = result.failed
    assert failed.item.idempotency_key == "k5" and not failed.retryable
    assert failed.attempts == 1 + math.ceil(math.log2(8))  # one request per halving, plus its own
    assert "422" in failed.error


def test_an_item_that_is_not_valid_json_fails_alone_without_a_request():
    bad = DeliveryItem("nan", {"engagement_pct": float("nan")})
    session = ScriptedSession([_Response(200)])
    result = post_batch(session, API, "tok", [*items(2), bad], 1.0, policy=FAST, sleep=lambda s: None)
    assert [i.idempotency_key for i in result.delivered] == ["k0", "k1"]
    [failed] = result.failed
    assert failed.item is bad and failed.attempts == 0 and not failed.retryable
    assert session.calls[0]["keys"] == ["k0", "k1"]


def test_deliver_chunks_into_batches():
    session = ScriptedSession(rule=lambda keys: _Response(200))
    result = deliver(session, API, "tok", items(450), batch_size=200, policy=FAST, sleep=lambda s: None)
    assert [len(c["keys"]) for c in session.calls] == [200, 200, 50]
    assert len(result.delivered) == 450


def test_breaker_makes_a_dead_service_cost_one_request_per_batch():
    session = ScriptedSession(rule=lambda keys: requests.ConnectionError("refused"))
    breaker = CircuitBreaker()
    result = deliver(session, API, "tok", items(30), batch_size=10, policy=FAST, breaker=breaker,
                     sleep=lambda s: None)
    assert len(result.failed) == 30
    assert len(session.calls) == FAST.max_attempts + 1 + 1
    assert breaker.tripped


def test_breaker_closes_when_the_service_answers_again():
    session = ScriptedSession([requests.ConnectionError("refused")] * 3 + [_Response(200)] * 5)
    breaker = CircuitBreaker()
    deliver(session, API, "tok", items(10), batch_size=5, policy=FAST, breaker=breaker, sleep=lambda s: None)
    assert not breaker.tripped
    assert breaker.policy(FAST) == FAST
