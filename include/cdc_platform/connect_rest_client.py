"""A small client for the Kafka Connect REST API (register, inspect, restart connectors)."""
from __future__ import annotations

from dataclasses import dataclass

import requests

from cdc_platform.polling import wait_until


class ConnectError(RuntimeError):
    pass


@dataclass(frozen=True)
class ConnectorState:
    name: str
    connector: str
    tasks: tuple[str, ...]
    trace: str | None = None

    @property
    def running(self) -> bool:
        return self.connector == "RUNNING" and bool(self.tasks) and all(t == "RUNNING" for t in self.tasks)

    @property
    def failed(self) -> bool:
        return self.connector == "FAILED" or any(t == "FAILED" for t in self.tasks)


class KafkaConnectClient:
    def __init__(self, base_url: str, timeout: float = 10.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.session.request(method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs)
        if response.status_code >= 400 and response.status_code != 404:
            raise ConnectError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response

    def plugins(self) -> list[str]:
        return [p["class"] for p in self._call("GET", "/connector-plugins").json()]

    def connectors(self) -> list[str]:
        return self._call("GET", "/connectors").json()

    def put_config(self, name: str, config: dict[str, str]) -> bool:
        """Create or update; returns True when the connector was created."""
        response = self._call("PUT", f"/connectors/{name}/config", json=config)
        return response.status_code == 201

    def get_config(self, name: str) -> dict[str, str] | None:
        response = self._call("GET", f"/connectors/{name}/config")
        return None if response.status_code == 404 else response.json()

    def status(self, name: str) -> ConnectorState | None:
        response = self._call("GET", f"/connectors/{name}/status")
        if response.status_code == 404:
            return None
        body = response.json()
        tasks = body.get("tasks", [])
        trace = body["connector"].get("trace") or next((t.get("trace") for t in tasks if t.get("trace")), None)
        return ConnectorState(name, body["connector"]["state"], tuple(t["state"] for t in tasks), trace)

    def wait_running(self, name: str, timeout: float = 120.0, interval: float = 1.0) -> ConnectorState:
        def status_unless_failed() -> ConnectorState | None:
            state = self.status(name)
            if state and state.failed:
                raise ConnectError(f"connector {name} FAILED: {(state.trace or '')[:2000]}")
            return state

        return wait_until(status_unless_failed, timeout, interval, f"connector {name} RUNNING",
                          until=lambda state: state and state.running, error=ConnectError)

    def restart(self, name: str, include_tasks: bool = True, only_failed: bool = True) -> None:
        self._call("POST", f"/connectors/{name}/restart",
                   params={"includeTasks": str(include_tasks).lower(), "onlyFailed": str(only_failed).lower()})

    def pause(self, name: str) -> None:
        self._call("PUT", f"/connectors/{name}/pause")

    def resume(self, name: str) -> None:
        self._call("PUT", f"/connectors/{name}/resume")

    def delete(self, name: str) -> bool:
        return self._call("DELETE", f"/connectors/{name}").status_code == 204

    def stop(self, name: str) -> None:
        """STOPPED (KIP-875): tasks shut down, unlike PAUSED; offsets can then be altered or reset."""
        self._call("PUT", f"/connectors/{name}/stop")

    def wait_state(self, name: str, wanted: str, timeout: float = 120.0, interval: float = 1.0) -> ConnectorState:
        return wait_until(lambda: self.status(name), timeout, interval, f"connector {name} {wanted}",
                          until=lambda state: state and state.connector == wanted, error=ConnectError)

    def offsets(self, name: str) -> list[dict]:
        """The connector's committed source offsets: [{"partition": {...}, "offset": {...}}]."""
        return self._call("GET", f"/connectors/{name}/offsets").json().get("offsets", [])

    def reset_offsets(self, name: str) -> str:
        """Forget the connector's source offsets (it must be STOPPED); it starts afresh on resume."""
        return self._call("DELETE", f"/connectors/{name}/offsets").json().get("message", "")
