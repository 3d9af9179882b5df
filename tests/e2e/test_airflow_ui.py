"""An operator's path through the Airflow UI: sign in, trigger ``cdc_provision``, see the run succeed.

The browser is tests/e2e/browser.py's. Screenshots of each step land in tests/artifacts/ (and
one of the page at the moment of any failure).
"""
from __future__ import annotations

import re
import time
from urllib.parse import unquote, urlparse

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from cdc_local.airflow_api import AirflowClient
from tests.e2e.browser import screenshot_on_failure, sign_in

pytestmark = pytest.mark.e2e

DAG_ID = "cdc_provision"
RUN_STATES = {"Queued", "Running", "Success", "Failed"}
RUN_TIMEOUT_S = 240
POLL_S = 3


def trigger_from_dag_page(page: Page, base_url: str) -> str:
    """Clicks Trigger and confirms the dialog; returns the id of the run the UI created."""
    page.goto(f"{base_url}/dags/{DAG_ID}")
    expect(page.get_by_role("heading", name=DAG_ID, exact=True)).to_be_visible()
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=f"Trigger Dag - {DAG_ID}")).to_be_visible()
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    # After a successful trigger the UI opens the new run's page: its URL names the run.
    page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/]+/?$"))
    expect(page.get_by_text("Dag Run Triggered", exact=True)).to_be_visible()
    run_id = unquote(urlparse(page.url).path.split("/runs/", 1)[1].strip("/"))
    expect(page.get_by_role("heading", name=run_id, exact=True)).to_be_visible()
    return run_id


def run_state_in_runs_view(page: Page, run_id: str) -> str | None:
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=run_id, exact=True))
    if row.count() == 0:
        return None
    states = RUN_STATES.intersection(text.strip() for text in row.first.get_by_role("cell").all_inner_texts())
    return states.pop() if states else None


def wait_for_terminal_state_in_ui(page: Page, base_url: str, run_id: str) -> str:
    page.goto(f"{base_url}/dags/{DAG_ID}/runs")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        expect(page.get_by_role("table")).to_be_visible()
        # The table renders before its rows arrive; give our row a moment before reading it.
        try:
            page.get_by_role("link", name=run_id, exact=True).first.wait_for(timeout=10_000)
        except PlaywrightTimeout:
            pass  # judged below like any other poll that finds no final state
        state = run_state_in_runs_view(page, run_id)
        if state in ("Success", "Failed"):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} shows {state!r} in the Runs view after {RUN_TIMEOUT_S}s")
        page.wait_for_timeout(POLL_S * 1000)
        page.reload()


def test_trigger_cdc_provision_from_the_ui_and_see_it_succeed(stack_env, artifacts_dir, page):
    base_url = stack_env["AIRFLOW_URL"].rstrip("/")
    username, password = stack_env["AIRFLOW_USER"], stack_env["AIRFLOW_PASSWORD"]
    api = AirflowClient(base_url, username, password)
    api.wait_for_dags({DAG_ID})
    # A run triggered on a paused DAG stays queued; the DAG has no schedule, so unpausing starts nothing else.
    api.set_paused(DAG_ID, False)

    with screenshot_on_failure(page, artifacts_dir / "airflow_ui_failure.png"):
        sign_in(page, base_url, username, password)
        page.screenshot(path=str(artifacts_dir / "airflow_ui_01_signed_in.png"))

        run_id = trigger_from_dag_page(page, base_url)
        page.screenshot(path=str(artifacts_dir / "airflow_ui_02_triggered.png"))

        state = wait_for_terminal_state_in_ui(page, base_url, run_id)
        page.screenshot(path=str(artifacts_dir / "airflow_ui_03_run_finished.png"), full_page=True)
        tasks = {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}
        assert state == "Success", f"run {run_id} shows {state} in the UI; task states: {tasks}"

    run = api.run(DAG_ID, run_id)
    assert run["state"] == "success", run
    # The run really came from the browser session, not from some other client.
    assert run["triggered_by"] == "ui", run
    assert run["triggering_user_name"] == username, run
    assert tasks and set(tasks.values()) == {"success"}, tasks
