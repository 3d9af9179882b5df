import asyncio
import json
import threading
from http.server import ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from cdc_platform import alerting
from cdc_local.alerts_receiver import AlertStore, make_handler


@pytest.fixture
def receiver(tmp_path):
    """The real receiver on an ephemeral loopback port (pure stdlib, no stack needed)."""
    store = AlertStore(tmp_path / "alerts.jsonl")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(store))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", store
    server.shutdown()


def test_post_alert_is_stored_and_listed(receiver):
    url, store = receiver
    alert = alerting.build_alert("slot lag high", "watchdog", "warning", "lag 5 MiB", {"lag_bytes": 5 << 20})
    stored = alerting.post_alert(f"{url}/alerts", alert)
    assert stored["title"] == "slot lag high" and stored["details"]["lag_bytes"] == 5 << 20
    assert [a["title"] for a in store.list(source="watchdog")] == ["slot lag high"]
    assert store.list(source="other") == []


def test_receiver_rejects_bad_alerts(receiver):
    import requests

    url, store = receiver
    assert requests.post(f"{url}/alerts", data="{nope", timeout=5).status_code == 400
    assert requests.post(f"{url}/alerts", json={"no": "title"}, timeout=5).status_code == 422
    assert store.list() == []


def test_post_alert_raises_when_the_webhook_is_down():
    with pytest.raises(alerting.AlertDeliveryError, match="not delivered"):
        alerting.post_alert("http://127.0.0.1:9/alerts", alerting.build_alert("x", "t"), timeout=1, attempts=1)


def test_deadline_callback_posts_a_warning(receiver, monkeypatch):
    url, store = receiver
    monkeypatch.setattr(alerting, "webhook_url", lambda conn_id: f"{url}/alerts")
    context = {"dag_run": {"dag_id": "cdc_reconcile", "dag_run_id": "r1", "state": "running"},
               "deadline": {"id": "d1", "deadline_time": "2026-11-27T10:00:00+00:00"}}
    asyncio.run(alerting.deadline_missed(context=context, expected_minutes=5))
    [alert] = store.list(source="deadline")
    assert alert["title"] == "Deadline missed: cdc_reconcile" and alert["severity"] == "warning"
    assert alert["details"]["expected_minutes"] == 5 and alert["details"]["run_id"] == "r1"


def test_task_failure_alert_carries_the_task_identity():
    ti = SimpleNamespace(dag_id="cdc_stream", task_id="run_stream", run_id="manual__1", try_number=2, log_url="u")
    alert = alerting.alert_from_task_context({"ti": ti, "exception": ValueError("boom")}, None, "error")
    assert alert["title"] == "Task failed: cdc_stream.run_stream"
    assert alert["message"] == "boom" and alert["details"]["try_number"] == 2
    json.dumps(alert)
