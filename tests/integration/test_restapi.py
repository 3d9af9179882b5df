"""The REST microservice as the stack runs it, through the delivery client."""
from __future__ import annotations

import random
import uuid

import pytest
import requests

from cdc_platform.delivery.rest_client import DeliveryItem, RetryPolicy, make_session, post_batch
from cdc_platform.delivery.rest_contract import BATCH_PATH, COUNT_PATH, EVENTS_PATH, FAULTS_PATH, HEALTH_PATH
from tests.polling import poll_until

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=3, base_backoff_s=0.05, max_backoff_s=0.2)




class Api:
    def __init__(self, url: str, token: str, admin_token: str):
        self.url, self.token = url, token
        self.auth = {"Authorization": f"Bearer {token}"}
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    def count(self, prefix: str) -> int:
        response = requests.get(self.url + COUNT_PATH, params={"prefix": prefix}, headers=self.auth, timeout=5)
        response.raise_for_status()
        return response.json()["count"]

    def event(self, key: str) -> dict:
        response = requests.get(f"{self.url}{EVENTS_PATH}/{key}", headers=self.auth, timeout=5)
        response.raise_for_status()
        return response.json()

    def set_faults(self, **config) -> dict:
        response = requests.post(self.url + FAULTS_PATH, json=config, headers=self.admin, timeout=5)
        response.raise_for_status()
        return response.json()

    def clear_faults(self) -> None:
        requests.delete(self.url + FAULTS_PATH, headers=self.admin, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def api(stack_env) -> Api:
    if "API_URL" not in stack_env:
        pytest.fail("API_URL missing from .stack/env: the restapi service is not part of this stack; run `make up`.")
    client = Api(stack_env["API_URL"], stack_env["API_TOKEN"], stack_env["API_ADMIN_TOKEN"])
    poll_until(lambda: requests.get(client.url + HEALTH_PATH, timeout=2).ok, 30, "the restapi service")
    return client


@pytest.fixture()
def faults(api):
    yield api
    api.clear_faults()


@pytest.fixture()
def prefix() -> str:
    return f"it-{uuid.uuid4().hex[:12]}-"


def _items(prefix: str, n: int, row_id: int = 1) -> list[DeliveryItem]:
    return [DeliveryItem(f"{prefix}{i}", {"id": row_id, "position": 1000 + i, "op": "c"}) for i in range(n)]


def test_health_is_open_and_everything_else_needs_the_token(api, prefix):
    assert requests.get(api.url + HEALTH_PATH, timeout=5).json() == {"status": "ok"}
    body = {"events": [{"idempotency_key": f"{prefix}0", "event": {}}]}
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        assert requests.post(api.url + BATCH_PATH, json=body, headers=headers, timeout=5).status_code == 401
        assert requests.get(api.url + COUNT_PATH, headers=headers, timeout=5).status_code == 401
        assert requests.post(api.url + FAULTS_PATH, json={"status": 500}, headers=headers, timeout=5).status_code == 401
    # The delivery token is no admin token.
    assert requests.post(api.url + FAULTS_PATH, json={"status": 500}, headers=api.auth, timeout=5).status_code == 401
    result = post_batch(make_session(), api.url, "not-the-token", _items(prefix, 1), 5.0, policy=FAST)
    assert [(f.retryable, f.attempts) for f in result.failed] == [(False, 1)]
    assert api.count(prefix) == 0


def test_redelivered_batches_are_stored_once(api, prefix):
    items = _items(prefix, 5)
    body = {"events": [{"idempotency_key": i.idempotency_key, "event": i.event} for i in items]}
    first = requests.post(api.url + BATCH_PATH, json=body, headers=api.auth, timeout=5).json()
    second = requests.post(api.url + BATCH_PATH, json=body, headers=api.auth, timeout=5).json()
    assert (first["accepted"], first["duplicates"]) == (5, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 5)
    assert len(post_batch(make_session(), api.url, api.token, items, 5.0, policy=FAST).delivered) == 5
    assert api.count(prefix) == 5
    stored = api.event(f"{prefix}3")
    assert stored["event"] == {"id": 1, "position": 1003, "op": "c"}
    assert stored["deliveries"] == 3


def test_events_are_listed_by_row_in_position_order(api, prefix):
    row_id = random.randrange(2_000_000_000, 2**31 - 1)
    items = list(reversed(_items(prefix, 4, row_id=row_id)))
    post_batch(make_session(), api.url, api.token, items, 5.0, policy=FAST)
    response = requests.get(api.url + EVENTS_PATH, params={"row_id": row_id}, headers=api.auth, timeout=5)
    assert [e["position"] for e in response.json()["events"]] == [1000, 1001, 1002, 1003]


def test_a_fixed_503_fault_exhausts_the_retries(faults, prefix):
    shown = faults.set_faults(status=503, key_prefix=prefix)
    assert shown["status"] == 503
    result = post_batch(make_session(), faults.url, faults.token, _items(prefix, 3), 5.0, policy=FAST)
    assert result.delivered == []
    assert {(f.attempts, f.retryable) for f in result.failed} == {(FAST.max_attempts, True)}
    assert result.failed[0].error.startswith("HTTP 503")
    assert requests.get(faults.url + FAULTS_PATH, headers=faults.admin, timeout=5).json()["injected_failures"] == 3
    assert faults.count(prefix) == 0
    faults.clear_faults()
    assert len(post_batch(make_session(), faults.url, faults.token, _items(prefix, 3), 5.0).delivered) == 3


def test_a_timed_out_batch_redelivered_later_is_stored_once(faults, prefix):
    faults.set_faults(latency_ms=1500, key_prefix=prefix)
    items = _items(prefix, 3)
    result = post_batch(make_session(), faults.url, faults.token, items, 0.5,
                        policy=RetryPolicy(max_attempts=2, base_backoff_s=0.05))
    assert all(f.retryable and "timeout" in f.error for f in result.failed) and len(result.failed) == 3
    # The service completes both requests the client gave up on: exactly why keys matter.
    poll_until(lambda: faults.count(prefix) == 3 and faults.event(f"{prefix}0")["deliveries"] == 2, 10,
          "the slow requests to complete")
    faults.clear_faults()
    assert len(post_batch(make_session(), faults.url, faults.token, items, 5.0).delivered) == 3
    assert faults.count(prefix) == 3
    assert faults.event(f"{prefix}0")["deliveries"] == 3


def test_an_item_the_service_rejects_fails_alone(api, prefix):
    items = _items(prefix, 6)
    poison = DeliveryItem(f"{prefix}poison", ["not", "an", "object"])
    result = post_batch(make_session(), api.url, api.token, [*items[:3], poison, *items[3:]], 5.0, policy=FAST)
    assert sorted(i.idempotency_key for i in result.delivered) == sorted(i.idempotency_key for i in items)
    [failed] = result.failed
    assert failed.item == poison and not failed.retryable and failed.error.startswith("HTTP 422")
    assert api.count(prefix) == 6
