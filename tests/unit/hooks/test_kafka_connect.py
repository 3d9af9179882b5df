"""KafkaConnectHook: the Connect worker's URL from its connection, and a client that calls it.
HTTP is answered by a transport adapter standing in for the worker; nothing else is replaced."""
from __future__ import annotations

import json

import pytest
import requests

from cdc_platform.hooks.kafka_connect import KafkaConnectHook
from cdc_platform.connect_rest_client import ConnectError


class ConnectWorker(requests.adapters.BaseAdapter):
    """Answers (method, path) with a scripted (status, body), or with each of a list of them in
    turn (the last one from then on), and records each request."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, object] | list[tuple[int, object]]]):
        super().__init__()
        self.routes = {route: answer if isinstance(answer, list) else [answer] for route, answer in routes.items()}
        self.requests: list[tuple[str, str, float | None]] = []

    def send(self, request, **kwargs):
        self.requests.append((request.method, request.url, kwargs.get("timeout")))
        answers = self.routes[(request.method, request.path_url.split("?")[0])]
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.url, response.request = request.url, request
        return response

    def close(self) -> None:
        pass


def connect_connection(monkeypatch, **conn) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_CONNECT_TEST", json.dumps({"conn_type": "http", **conn}))
    return "connect_test"


@pytest.mark.parametrize(("conn", "url"), [
    ({"host": "connect.test", "port": 8083}, "http://connect.test:8083"),
    ({"host": "connect.test", "schema": "https"}, "https://connect.test"),
])
def test_the_base_url_is_the_connections_scheme_host_and_port(monkeypatch, conn, url):
    assert KafkaConnectHook(connect_connection(monkeypatch, **conn)).base_url == url


def test_the_client_calls_the_connections_worker_with_the_hooks_timeout(monkeypatch):
    conn_id = connect_connection(monkeypatch, host="connect.test", port=8083)
    client = KafkaConnectHook(conn_id, timeout=3.5).get_conn()
    worker = ConnectWorker({("GET", "/connectors/cdc/status"): (200, {
        "connector": {"state": "RUNNING"},
        "tasks": [{"state": "RUNNING"}, {"state": "FAILED", "trace": "org.postgresql.util.PSQLException"}],
    })})
    client.session.mount("http://", worker)

    state = client.status("cdc")

    assert worker.requests == [("GET", "http://connect.test:8083/connectors/cdc/status", 3.5)]
    assert (state.connector, state.tasks, state.failed) == ("RUNNING", ("RUNNING", "FAILED"), True)
    assert state.trace == "org.postgresql.util.PSQLException"


def test_an_unknown_connector_has_no_status_and_a_worker_error_is_raised(monkeypatch):
    client = KafkaConnectHook(connect_connection(monkeypatch, host="connect.test")).get_conn()
    client.session.mount("http://", ConnectWorker({
        ("GET", "/connectors/missing/status"): (404, {"error_code": 404}),
        ("PUT", "/connectors/cdc/config"): (500, {"message": "boom"}),
    }))
    assert client.status("missing") is None
    with pytest.raises(ConnectError, match="PUT /connectors/cdc/config -> 500"):
        client.put_config("cdc", {"connector.class": "x"})


def status(connector: str, *tasks: str, trace: str | None = None) -> tuple[int, dict]:
    return 200, {"connector": {"state": connector, **({"trace": trace} if trace else {})},
                 "tasks": [{"state": task} for task in tasks]}


def test_waiting_for_running_returns_the_state_once_connector_and_tasks_run(monkeypatch):
    client = KafkaConnectHook(connect_connection(monkeypatch, host="connect.test")).get_conn()
    worker = ConnectWorker({("GET", "/connectors/cdc/status"): [
        (404, {}), status("UNASSIGNED"), status("RUNNING"), status("RUNNING", "RUNNING")]})
    client.session.mount("http://", worker)
    assert client.wait_running("cdc", timeout=5, interval=0.01).tasks == ("RUNNING",)
    assert len(worker.requests) == 4


def test_waiting_for_running_stops_at_a_failure_with_its_trace(monkeypatch):
    client = KafkaConnectHook(connect_connection(monkeypatch, host="connect.test")).get_conn()
    client.session.mount("http://", ConnectWorker({("GET", "/connectors/cdc/status"): [
        status("RUNNING"), status("FAILED", trace="slot cdc_slot is active")]}))
    with pytest.raises(ConnectError, match="connector cdc FAILED: slot cdc_slot is active"):
        client.wait_running("cdc", timeout=60, interval=0.01)


def test_a_state_never_reached_is_a_connect_error_naming_the_last_state(monkeypatch):
    client = KafkaConnectHook(connect_connection(monkeypatch, host="connect.test")).get_conn()
    client.session.mount("http://", ConnectWorker({("GET", "/connectors/cdc/status"): status("PAUSED")}))
    with pytest.raises(ConnectError, match=r"connector cdc STOPPED; last seen: ConnectorState\(.*'PAUSED'"):
        client.wait_state("cdc", "STOPPED", timeout=0.05, interval=0.01)
