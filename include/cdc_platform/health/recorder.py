"""Writes to the health history from Airflow tasks and callbacks, through the platform's
PostgreSQL connection.

Recording is best effort: a history that cannot be written is logged, and never fails the check,
the round or the alert it describes (those matter more than the page that shows them).
"""
from __future__ import annotations

import logging

from cdc_platform import connections as conn_ids
from cdc_platform.health import store

log = logging.getLogger(__name__)


def current_run() -> tuple[str | None, str | None]:
    """The (dag_id, run_id) of the task this runs in; (None, None) elsewhere."""
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
    except Exception:  # outside a task: no context to name
        return None, None
    return ti.dag_id, ti.run_id


def _write(what: str, write, postgres_conn_id: str) -> bool:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    try:
        conn = PostgresHook(postgres_conn_id=postgres_conn_id).get_conn()
    except Exception as exc:
        log.warning("health history: %s not recorded, no connection: %s", what, exc)
        return False
    try:
        write(conn)
        return True
    except Exception as exc:
        log.warning("health history: %s not recorded: %s", what, exc)
        return False
    finally:
        conn.close()


def record_sample(report: dict, postgres_conn_id: str = conn_ids.POSTGRES_CONN_ID) -> bool:
    dag_id, run_id = current_run()
    return _write("watchdog sample", lambda conn: store.record_sample(
        conn, report["metrics"], report["breaches"], dag_id=dag_id, run_id=run_id), postgres_conn_id)


def record_event(kind: str, title: str, summary: dict, severity: str | None = None,
                 dag_id: str | None = None, run_id: str | None = None,
                 postgres_conn_id: str = conn_ids.POSTGRES_CONN_ID) -> bool:
    if dag_id is None and run_id is None:
        dag_id, run_id = current_run()
    return _write(f"{kind} event", lambda conn: store.record_event(
        conn, kind, title, summary, severity=severity, dag_id=dag_id, run_id=run_id), postgres_conn_id)
