"""A small client for Airflow's REST API (v2): what the demo and the tests drive Airflow with."""
from __future__ import annotations

import time

import requests

from cdc_platform.polling import wait_until

TERMINAL_STATES = {"success", "failed"}


class AirflowApiError(RuntimeError):
    pass


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 15.0):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.session = requests.Session()
        self._token: str | None = None

    def _auth(self) -> None:
        response = self.session.post(f"{self.base_url}/auth/token", timeout=self.timeout,
                                     json={"username": self.username, "password": self.password})
        if response.status_code not in (200, 201):
            raise AirflowApiError(f"login failed ({response.status_code}): {response.text[:300]}")
        self._token = response.json()["access_token"]
        self.session.headers["Authorization"] = f"Bearer {self._token}"

    def request(self, method: str, path: str, **kwargs) -> dict:
        if self._token is None:
            self._auth()
        response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=self.timeout, **kwargs)
        if response.status_code == 401:
            self._auth()
            response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else {}

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.request("GET", "/dags", params={"limit": 100})["dags"]}

    def wait_for_dags(self, dag_ids: set[str], timeout: float = 180) -> None:
        wait_until(lambda: sorted(dag_ids - self.dag_ids()), timeout, 2, f"Airflow to parse DAGs {sorted(dag_ids)}",
                   until=lambda missing: not missing, error=AirflowApiError)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> str:
        body = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def runs(self, dag_id: str, limit: int = 20) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns",
                            params={"limit": limit, "order_by": "-run_after"})["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2.0,
                     on_progress=None) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL_STATES:
                return run
            if time.monotonic() > deadline:
                raise AirflowApiError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")
            if on_progress:
                on_progress(run)
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                            params={"deserialize": True})["value"]

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> dict:
        return self.request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}",
                            json={"new_state": state})
