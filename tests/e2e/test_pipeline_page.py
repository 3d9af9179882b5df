"""The "CDC pipeline" page in the Airflow UI, on the live stack: behind Airflow's login, opened
from the UI's navigation, drawing each stage and the history's charts from a live stream, and
turning Debezium red one watchdog run after the connector is paused.

Screenshots land in tests/artifacts/ (pipeline_page_*.png).
"""
from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import FrameLocator, Page, expect

from cdc_local import pipeline_driver
from cdc_platform import names, stream_progress
from cdc_platform.sink_ledger import query_checkpoint
from cdc_platform.health import checks as health_checks
from cdc_platform.health import view
from cdc_platform.connect_rest_client import KafkaConnectClient
from cdc_platform.pipeline_page.app import UI_ROUTE, URL_PREFIX
from tests.e2e import checks
from tests.e2e.browser import screenshot_on_failure, sign_in
from tests.polling import poll_until

pytestmark = pytest.mark.e2e

# The watchdog only records here; breaches of the DLQ, parked and quarantine limits left by
# other tests would not change what this test looks at.
LOOSE = checks.LOOSE_WATCHDOG


def bearer(stack_env) -> dict:
    response = requests.post(f"{stack_env['AIRFLOW_URL'].rstrip('/')}/auth/token", timeout=15,
                             json={"username": stack_env["AIRFLOW_USER"], "password": stack_env["AIRFLOW_PASSWORD"]})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def summary(stack_env) -> dict:
    response = requests.get(f"{stack_env['AIRFLOW_URL'].rstrip('/')}{URL_PREFIX}/api/summary",
                            headers=bearer(stack_env), timeout=30)
    response.raise_for_status()
    return response.json()


def test_the_page_and_its_data_need_an_airflow_login(stack_env):
    base = f"{stack_env['AIRFLOW_URL'].rstrip('/')}{URL_PREFIX}"
    for path in ("/", "/api/summary"):
        assert requests.get(base + path, timeout=15).status_code == 401, path
        assert requests.get(base + path, headers={"Authorization": "Bearer forged"}, timeout=15).status_code == 403
        assert requests.get(base + path, cookies={"_token": "forged"}, timeout=15).status_code == 403
    page = requests.get(f"{base}/", headers=bearer(stack_env), timeout=15)
    assert page.status_code == 200 and "<title>CDC pipeline</title>" in page.text
    assert [s["id"] for s in summary(stack_env)["stages"]] == list(view.STAGES)


def stage(frame: FrameLocator, stage_id: str):
    return frame.locator(f'[data-stage="{stage_id}"]')


def open_page(page: Page, stack_env) -> FrameLocator:
    base_url = stack_env["AIRFLOW_URL"].rstrip("/")
    sign_in(page, base_url, stack_env["AIRFLOW_USER"], stack_env["AIRFLOW_PASSWORD"])
    page.get_by_role("link", name="CDC pipeline").click()
    page.wait_for_url(re.compile(rf"/plugin/{UI_ROUTE}"))
    frame = page.frame_locator(f'iframe[src*="{URL_PREFIX}/"]')
    expect(frame.get_by_role("heading", name="CDC pipeline", exact=True)).to_be_visible()
    expect(frame.locator("body")).to_have_attribute("data-loaded-at", re.compile(r"\d"))
    return frame


def refresh(frame: FrameLocator) -> None:
    frame.get_by_role("button", name="Refresh").click()


def committed_messages(stack_env, query: str) -> int:
    committed = health_checks.latest_committed_offsets(
        query_checkpoint(stream_progress.stream_checkpoint_root(stack_env), query))
    return 0 if committed is None else sum(o for partitions in committed[0].values() for o in partitions.values())


def paused_sample_recorded(stream, connect: KafkaConnectClient, stack_env) -> dict:
    """Pause the connector and run the watchdog without its repair, until its sample holds the
    paused connector (a scheduled run between the two may see it first and resume it)."""
    for _ in range(3):
        connect.pause(names.CONNECTOR_NAME)
        poll_until(lambda: connect.status(names.CONNECTOR_NAME).connector == "PAUSED", 60, "connector paused")
        run = pipeline_driver.run_dag(stream, "cdc_watchdog", conf={**LOOSE, "auto_restart": False})
        newest = summary(stack_env)
        debezium = next(s for s in newest["stages"] if s["id"] == "debezium")
        if debezium["facts"]["connector"] == "PAUSED":
            return run
    pytest.fail("no watchdog sample saw the paused connector in three tries")


@pytest.mark.timeout(1200)
def test_the_page_shows_the_live_pipeline_and_turns_debezium_red_when_the_connector_is_paused(
        stream, stack_env, pg, page, artifacts_dir):
    # Two samples with traffic between them: a rate needs two.
    sink_queries = [names.sink_query(sink) for sink in names.STREAM_SINKS]
    pipeline_driver.run_dag(stream, "cdc_watchdog", conf=LOOSE)
    before = {q: committed_messages(stack_env, q) for q in sink_queries}
    checks.write_workload(pg, 300, seed=1101)
    poll_until(lambda: all(committed_messages(stack_env, q) >= before[q] + 300 for q in sink_queries), 300,
               "every sink query to commit the 300-row workload")
    pipeline_driver.run_dag(stream, "cdc_watchdog", conf=LOOSE)
    rates = summary(stack_env)["charts"]["rate"]["series"]
    assert all(values and values[-1] and values[-1] > 0 for values in rates.values()), rates

    connect = KafkaConnectClient(stack_env["CONNECT_URL"])
    with screenshot_on_failure(page, artifacts_dir / "pipeline_page_failure.png"):
        frame = open_page(page, stack_env)
        for stage_id in view.STAGES:
            expect(stage(frame, stage_id)).to_be_visible()
            expect(stage(frame, stage_id)).not_to_have_attribute("data-state", re.compile("down|unknown"))
        expect(stage(frame, "debezium")).to_have_attribute("data-state", "ok")
        expect(stage(frame, "debezium")).to_contain_text("RUNNING")
        rate_chart = frame.locator('[data-chart="rate"]')
        expect(rate_chart.locator("svg polyline, svg circle").first).to_be_visible()
        assert int(rate_chart.get_attribute("data-points")) >= len(names.STREAM_SINKS)
        page.screenshot(path=str(artifacts_dir / "pipeline_page_01_live.png"), full_page=True)

        try:
            run = paused_sample_recorded(stream, connect, stack_env)
            refresh(frame)
            expect(stage(frame, "debezium")).to_have_attribute("data-state", "down", timeout=30_000)
            expect(stage(frame, "debezium")).to_contain_text("PAUSED")
            # The breach was alerted, and the page links the alert to the run that raised it.
            alert_link = frame.locator('[data-table="alerts"] a[href="'
                                       + view.run_link("cdc_watchdog", run["dag_run_id"]) + '"]')
            expect(alert_link.first).to_be_visible()
            page.screenshot(path=str(artifacts_dir / "pipeline_page_02_connector_paused.png"), full_page=True)
        finally:
            if connect.status(names.CONNECTOR_NAME).connector == "PAUSED":
                connect.resume(names.CONNECTOR_NAME)
            connect.wait_running(names.CONNECTOR_NAME)

        pipeline_driver.run_dag(stream, "cdc_watchdog", conf=LOOSE)
        refresh(frame)
        expect(stage(frame, "debezium")).to_have_attribute("data-state", "ok", timeout=30_000)
        page.screenshot(path=str(artifacts_dir / "pipeline_page_03_resumed.png"), full_page=True)


def test_the_last_reconcile_and_dlq_rounds_show_with_links_to_their_runs(stream, stack_env, page, artifacts_dir):
    reconcile = pipeline_driver.run_dag(stream, "cdc_reconcile")
    dlq_round = pipeline_driver.run_dag(stream, "cdc_dlq_reprocess", conf={"base_backoff_seconds": 0})
    assert (reconcile["state"], dlq_round["state"]) == ("success", "success"), (reconcile, dlq_round)

    with screenshot_on_failure(page, artifacts_dir / "pipeline_page_rounds_failure.png"):
        frame = open_page(page, stack_env)
        for table, run in (("reconcile", reconcile), ("dlq_round", dlq_round)):
            link = frame.locator(f'[data-table="{table}"] a[href="{view.run_link(run["dag_id"], run["dag_run_id"])}"]')
            expect(link).to_have_text(run["dag_run_id"])
        # Drift per aggregate, in the reconcile row.
        for aggregate in checks.xcom(stream, reconcile, "reconcile_redis")["drift_before"]:
            expect(frame.locator('[data-table="reconcile"]')).to_contain_text(f"{aggregate}: ")
        frame.locator('[data-table="reconcile"]').scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts_dir / "pipeline_page_04_rounds.png"), full_page=True)
