"""The stream task's state as the page shows it: the state's plain value, whether the metadata DB
hands back the enum or its string, and None for a task instance not yet scheduled."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from airflow.utils.state import TaskInstanceState

from cdc_platform.pipeline_page import app

STARTED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def newest_task_instance(monkeypatch, ti) -> None:
    session = SimpleNamespace(scalars=lambda _query: SimpleNamespace(first=lambda: ti))

    @contextmanager
    def create_session():
        yield session

    monkeypatch.setattr("airflow.utils.session.create_session", create_session)


@pytest.mark.parametrize("state, shown", [
    (TaskInstanceState.RUNNING, "running"),
    ("up_for_retry", "up_for_retry"),
    (None, None),
])
def test_the_stream_task_state_is_the_states_value(monkeypatch, state, shown):
    newest_task_instance(monkeypatch, SimpleNamespace(state=state, dag_id=app.STREAM_DAG_ID, run_id="r1",
                                                      start_date=STARTED))
    assert app.stream_task_state() == {"state": shown, "run_id": "r1", "started_at": STARTED.timestamp(),
                                       "link": app.view.run_link(app.STREAM_DAG_ID, "r1")}


def test_no_stream_task_instance_yet_is_none(monkeypatch):
    newest_task_instance(monkeypatch, None)
    assert app.stream_task_state() is None
