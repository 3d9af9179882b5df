"""The health history's tables and queries (PostgreSQL, the engagement database's ``cdc_ops``
schema: outside the publication, so none of it is captured).

Writers append one row per watchdog sample or per outcome and prune what is older than the
retention; the page only reads.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

SCHEMA = "cdc_ops"
SAMPLES = f"{SCHEMA}.health_samples"
EVENTS = f"{SCHEMA}.pipeline_events"
# A week of five-minute samples is about 2,000 rows.
DEFAULT_RETENTION = timedelta(days=7)

EVENT_KINDS = ("reconcile", "dlq_round", "alert")

DDL = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SAMPLES} (
        sampled_at timestamptz NOT NULL DEFAULT now(),
        dag_id text,
        run_id text,
        metrics jsonb NOT NULL,
        breaches jsonb NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS health_samples_sampled_at ON {SAMPLES} (sampled_at)",
    f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
        at timestamptz NOT NULL DEFAULT now(),
        kind text NOT NULL,
        dag_id text,
        run_id text,
        severity text,
        title text NOT NULL,
        summary jsonb NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS pipeline_events_kind_at ON {EVENTS} (kind, at)",
)


def ensure_schema(conn) -> None:
    """Create the tables when missing (provisioning does it; writers call it on their first
    miss, so a watchdog that runs before provisioning records too)."""
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            # CREATE ... IF NOT EXISTS races with itself; the lock makes concurrent writers take turns.
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SCHEMA,))
            for statement in DDL:
                cur.execute(statement)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = autocommit


def _insert(conn, sql: str, params: tuple) -> None:
    import psycopg2

    for attempt in (1, 2):
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
            conn.commit()
            return
        except psycopg2.errors.UndefinedTable:
            conn.rollback()
            if attempt == 2:
                raise
            ensure_schema(conn)


def prune(conn, retention: timedelta = DEFAULT_RETENTION) -> int:
    """Delete what is older than the retention; returns the rows deleted."""
    cutoff = datetime.now(timezone.utc) - retention
    deleted = 0
    with conn.cursor() as cur:
        for table, column in ((SAMPLES, "sampled_at"), (EVENTS, "at")):
            cur.execute(f"DELETE FROM {table} WHERE {column} < %s", (cutoff,))
            deleted += cur.rowcount
    conn.commit()
    return deleted


def record_sample(conn, metrics: dict, breaches: list[dict], dag_id: str | None = None,
                  run_id: str | None = None, retention: timedelta = DEFAULT_RETENTION) -> None:
    _insert(conn, f"INSERT INTO {SAMPLES} (dag_id, run_id, metrics, breaches) VALUES (%s, %s, %s, %s)",
            (dag_id, run_id, json.dumps(metrics, default=str), json.dumps(breaches, default=str)))
    prune(conn, retention)


def record_event(conn, kind: str, title: str, summary: dict, severity: str | None = None,
                 dag_id: str | None = None, run_id: str | None = None) -> None:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}; one of {EVENT_KINDS}")
    _insert(conn, f"INSERT INTO {EVENTS} (kind, dag_id, run_id, severity, title, summary) "
                  "VALUES (%s, %s, %s, %s, %s, %s)",
            (kind, dag_id, run_id, severity, title, json.dumps(summary, default=str)))


def _exists(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL", (SAMPLES, EVENTS))
        return bool(cur.fetchone()[0])


def read_samples(conn, since: timedelta) -> list[dict]:
    """Samples newer than ``since`` ago, oldest first; [] before the first sample."""
    return _samples(conn, since) if _exists(conn) else []


def read_events(conn, kind: str, limit: int = 20) -> list[dict]:
    """The newest events of a kind, newest first."""
    return _events(conn, kind, limit) if _exists(conn) else []


def read_history(conn, since: timedelta, events_per_kind: int = 20) -> tuple[list[dict], dict[str, list[dict]]]:
    """What the page shows: the samples of ``read_samples`` and, per kind, the newest events of
    ``read_events``; the tables are looked up once for all of them."""
    if not _exists(conn):
        return [], {kind: [] for kind in EVENT_KINDS}
    return _samples(conn, since), {kind: _events(conn, kind, events_per_kind) for kind in EVENT_KINDS}


def _samples(conn, since: timedelta) -> list[dict]:
    cutoff = datetime.now(timezone.utc) - since
    with conn.cursor() as cur:
        cur.execute(f"SELECT extract(epoch FROM sampled_at), dag_id, run_id, metrics, breaches FROM {SAMPLES} "
                    "WHERE sampled_at >= %s ORDER BY sampled_at", (cutoff,))
        return [{"at": float(at), "dag_id": dag_id, "run_id": run_id, "metrics": metrics, "breaches": breaches}
                for at, dag_id, run_id, metrics, breaches in cur.fetchall()]


def _events(conn, kind: str, limit: int) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT extract(epoch FROM at), dag_id, run_id, severity, title, summary FROM {EVENTS} "
                    "WHERE kind = %s ORDER BY at DESC LIMIT %s", (kind, limit))
        return [{"at": float(at), "dag_id": dag_id, "run_id": run_id, "severity": severity, "title": title,
                 "summary": summary} for at, dag_id, run_id, severity, title, summary in cur.fetchall()]
