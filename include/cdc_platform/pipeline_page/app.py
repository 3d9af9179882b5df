"""The page and its data endpoint, behind Airflow's own authentication.

Airflow mounts a plugin's FastAPI app without any access check, so every route here depends on
:func:`require_airflow_login`: no token (the UI's ``_token`` cookie or a bearer header) is a 401,
a token the auth manager rejects a 403. Each request reads the history (a few thousand rows at
most) and the stream task's state; nothing is measured per page view.
"""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from cdc_platform import connections as conn_ids
from cdc_platform.health import store, view

URL_PREFIX = "/cdc-pipeline"
# The page's route inside the Airflow UI: /plugin/<UI_ROUTE>.
UI_ROUTE = "cdc-pipeline"
PAGE = Path(__file__).with_name("page.html")
STREAM_DAG_ID = "cdc_stream"
STREAM_TASK_ID = "run_stream"
MAX_HOURS = 7 * 24


def history_connection(conn_id: str = conn_ids.POSTGRES_CONN_ID):
    """The platform's PostgreSQL, from the Airflow connection (the API server resolves
    connections itself: environment, secrets backend, metadata DB)."""
    import psycopg2
    from airflow.models.connection import Connection

    conn = Connection.get_connection_from_secrets(conn_id)
    return psycopg2.connect(host=conn.host, port=conn.port or 5432, dbname=conn.schema, user=conn.login,
                            password=conn.password, connect_timeout=5,
                            application_name="cdc-pipeline-page")


def stream_task_state() -> dict | None:
    """The newest ``cdc_stream.run_stream`` task instance, from Airflow's metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalars(
            select(TaskInstance)
            .where(TaskInstance.dag_id == STREAM_DAG_ID, TaskInstance.task_id == STREAM_TASK_ID)
            .order_by(TaskInstance.start_date.desc().nulls_last())
            .limit(1)).first()
        if ti is None:
            return None
        return {"state": TaskInstanceState(ti.state).value if ti.state else None,
                "run_id": ti.run_id, "link": view.run_link(ti.dag_id, ti.run_id),
                "started_at": ti.start_date.timestamp() if ti.start_date else None}


def read_summary(hours: float) -> dict:
    conn = history_connection()
    try:
        samples, events = store.read_history(conn, timedelta(hours=hours))
    finally:
        conn.close()
    return view.summary(samples, events, time.time(), stream_task_state())


async def require_airflow_login(request: Request) -> None:
    """Airflow's own check of the UI's routes (``get_user``, then ``requires_access_view``).

    Imported per request, not with the plugin: every Airflow process loads plugins, and the
    API server's security module would add seconds to each task's start.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user, requires_access_view

    user = await get_user(request, None, await bearer_scheme(request))
    requires_access_view(AccessView.WEBSITE)(request, user)


def create_app() -> FastAPI:
    app = FastAPI(title="CDC pipeline", dependencies=[Depends(require_airflow_login)])

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/api/summary")
    def summary(hours: float = Query(6.0, gt=0, le=MAX_HOURS)) -> dict:
        return read_summary(hours)

    return app
