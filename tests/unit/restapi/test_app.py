"""The REST microservice app, in-process over a temporary SQLite file."""
from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from cdc_platform.delivery.rest_contract import BATCH_PATH, COUNT_PATH, EVENTS_PATH, FAULTS_PATH, HEALTH_PATH, MAX_KEY_LENGTH
from cdc_local.restapi.app import create_app

TOKEN = "unit-test-token"
ADMIN_TOKEN = "unit-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture()
def client(tmp_path):
    with TestClient(create_app(tmp_path / "events.db", TOKEN, ADMIN_TOKEN)) as test_client:
        yield test_client


def batch(*keys: str, row_id: int = 1) -> dict:
    return {"events": [{"idempotency_key": k, "event": {"id": row_id, "position": i, "op": "c"}}
                       for i, k in enumerate(keys)]}


def test_health_needs_no_token(client):
    assert client.get(HEALTH_PATH).json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_every_v1_endpoint_needs_the_token(client, headers):
    assert client.post(BATCH_PATH, json=batch("a"), headers=headers).status_code == 401
    assert client.get(COUNT_PATH, headers=headers).status_code == 401
    assert client.get(f"{EVENTS_PATH}/a", headers=headers).status_code == 401
    assert client.post(FAULTS_PATH, json={"status": 500}, headers=headers).status_code == 401
    assert client.get(COUNT_PATH, headers=AUTH).json() == {"count": 0}


@pytest.mark.parametrize("token, admin_token", [("", ADMIN_TOKEN), (TOKEN, ""), (TOKEN, TOKEN)])
def test_empty_or_shared_tokens_are_refused(tmp_path, token, admin_token):
    with pytest.raises(ValueError):
        create_app(tmp_path / "x.db", token, admin_token)


def test_fault_injection_needs_the_admin_token_and_the_delivery_token_is_not_it(client):
    assert client.post(FAULTS_PATH, json={"status": 500}, headers=AUTH).status_code == 401
    assert client.get(FAULTS_PATH, headers=AUTH).status_code == 401
    assert client.delete(FAULTS_PATH, headers=AUTH).status_code == 401
    assert client.post(BATCH_PATH, json=batch("a"), headers=ADMIN).status_code == 401
    assert client.post(FAULTS_PATH, json={"status": 500}, headers=ADMIN).status_code == 200


def test_redelivery_never_duplicates(client):
    first = client.post(BATCH_PATH, json=batch("a", "b", "c"), headers=AUTH).json()
    assert (first["accepted"], first["duplicates"]) == (3, 0)
    again = client.post(BATCH_PATH, json=batch("b", "c", "d", "d"), headers=AUTH).json()
    assert (again["accepted"], again["duplicates"]) == (1, 3)
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate", "accepted", "duplicate"]
    assert client.get(COUNT_PATH, headers=AUTH).json() == {"count": 4}
    stored = client.get(f"{EVENTS_PATH}/b", headers=AUTH).json()
    assert stored["deliveries"] == 2
    assert stored["event"] == {"id": 1, "position": 1, "op": "c"}  # the first delivery wins


def test_events_survive_a_restart(tmp_path):
    with TestClient(create_app(tmp_path / "events.db", TOKEN, ADMIN_TOKEN)) as c:
        c.post(BATCH_PATH, json=batch("a", "b"), headers=AUTH)
    with TestClient(create_app(tmp_path / "events.db", TOKEN, ADMIN_TOKEN)) as c:
        assert c.get(COUNT_PATH, headers=AUTH).json() == {"count": 2}


@pytest.mark.parametrize("body", [
    {},
    {"events": []},
    {"events": [{"idempotency_key": "a"}]},
    {"events": [{"idempotency_key": "", "event": {}}]},
    {"events": [{"idempotency_key": "x" * (MAX_KEY_LENGTH + 1), "event": {}}]},
    {"events": [{"idempotency_key": 5, "event": {}}]},
    {"events": [{"idempotency_key": "a", "event": "not an object"}]},
    {"events": "nope"},
])
def test_malformed_batches_get_422_and_store_nothing(client, body):
    assert client.post(BATCH_PATH, json=body, headers=AUTH).status_code == 422
    assert client.get(COUNT_PATH, headers=AUTH).json() == {"count": 0}


def test_invalid_json_gets_422(client):
    response = client.post(BATCH_PATH, content=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422


def test_lookups_by_key_prefix_and_row(client):
    client.post(BATCH_PATH, json=batch("run1-a", "run1-b", row_id=5), headers=AUTH)
    client.post(BATCH_PATH, json=batch("run2-a", row_id=6), headers=AUTH)
    assert client.get(COUNT_PATH, params={"prefix": "run1-"}, headers=AUTH).json() == {"count": 2}
    rows = client.get(EVENTS_PATH, params={"row_id": 5}, headers=AUTH).json()["events"]
    assert [(e["idempotency_key"], e["row_id"], e["position"]) for e in rows] == [("run1-a", 5, 0), ("run1-b", 5, 1)]
    assert client.get(f"{EVENTS_PATH}/missing", headers=AUTH).status_code == 404


def test_events_of_a_row_range_page_in_row_order(client):
    for row_id in (9, 3, 4, 7):
        client.post(BATCH_PATH, json=batch(f"{row_id}:a", f"{row_id}:b", row_id=row_id), headers=AUTH)
    body = client.get(EVENTS_PATH, params={"row_min": 4, "row_max": 9, "limit": 3}, headers=AUTH).json()
    assert (body["row_min"], body["row_max"]) == (4, 9)  # echoed: a client can tell the read is supported
    assert [(e["row_id"], e["position"]) for e in body["events"]] == [(4, 0), (4, 1), (7, 0)]
    rest = client.get(EVENTS_PATH, params={"row_min": 8, "row_max": 9}, headers=AUTH).json()["events"]
    assert [e["idempotency_key"] for e in rest] == ["9:a", "9:b"]
    assert all(e["received_at"] for e in body["events"] + rest)
    assert client.get(EVENTS_PATH, params={"row_min": 10, "row_max": 20}, headers=AUTH).json()["events"] == []


@pytest.mark.parametrize("params", [{"row_min": 5}, {"row_max": 5}, {"row_min": 6, "row_max": 5},
                                    {"row_min": 1, "row_max": 5, "row_id": 3}])
def test_row_ranges_need_both_bounds_in_order(client, params):
    assert client.get(EVENTS_PATH, params=params, headers=AUTH).status_code == 422


def test_row_ranges_need_the_token(client):
    assert client.get(EVENTS_PATH, params={"row_min": 1, "row_max": 5}).status_code == 401


def test_fixed_status_fault_fails_only_batch_posts(client):
    assert client.post(FAULTS_PATH, json={"status": 503}, headers=ADMIN).status_code == 200
    assert client.post(BATCH_PATH, json=batch("a"), headers=AUTH).status_code == 503
    assert client.get(COUNT_PATH, headers=AUTH).status_code == 200
    assert client.get(HEALTH_PATH).status_code == 200
    shown = client.get(FAULTS_PATH, headers=ADMIN).json()
    assert (shown["status"], shown["injected_failures"]) == (503, 1)
    client.delete(FAULTS_PATH, headers=ADMIN)
    assert client.post(BATCH_PATH, json=batch("a"), headers=AUTH).status_code == 200
    assert client.get(COUNT_PATH, headers=AUTH).json() == {"count": 1}


def test_a_fault_never_stores_the_batch(client):
    client.post(FAULTS_PATH, json={"status": 400}, headers=ADMIN)
    assert client.post(BATCH_PATH, json=batch("a"), headers=AUTH).status_code == 400
    client.delete(FAULTS_PATH, headers=ADMIN)
    assert client.get(COUNT_PATH, headers=AUTH).json() == {"count": 0}


def test_seeded_error_rate_is_repeatable(client):
    def run() -> list[int]:
        client.post(FAULTS_PATH, json={"error_rate": 0.5, "seed": 42}, headers=ADMIN)
        return [client.post(BATCH_PATH, json=batch(f"k{i}"), headers=AUTH).status_code for i in range(30)]

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 503}


def test_key_prefix_confines_faults(client):
    client.post(FAULTS_PATH, json={"status": 500, "key_prefix": "test-"}, headers=ADMIN)
    assert client.post(BATCH_PATH, json=batch("live-1"), headers=AUTH).status_code == 200
    assert client.post(BATCH_PATH, json=batch("live-2", "test-1"), headers=AUTH).status_code == 500


def test_latency_fault_delays_batch_posts(client):
    client.post(FAULTS_PATH, json={"latency_ms": 300}, headers=ADMIN)
    start = time.monotonic()
    assert client.post(BATCH_PATH, json=batch("a"), headers=AUTH).status_code == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    client.get(COUNT_PATH, headers=AUTH)
    assert time.monotonic() - start < 0.3


@pytest.mark.parametrize("config", [{"error_rate": 2}, {"status": 200}, {"latency_ms": -1}, {"bogus": 1}])
def test_invalid_fault_configs_are_refused(client, config):
    assert client.post(FAULTS_PATH, json=config, headers=ADMIN).status_code == 422
