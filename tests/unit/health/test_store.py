"""What the page reads from the health history, against a recording connection: the tables are
looked up once a request, and a database without them reads as an empty history."""
from __future__ import annotations

from datetime import timedelta

from cdc_platform.health import store


class RecordingConnection:
    def __init__(self, tables_exist: bool):
        self.tables_exist = tables_exist
        self.statements: list[str] = []

    def cursor(self):
        return RecordingCursor(self)


class RecordingCursor:
    def __init__(self, conn: RecordingConnection):
        self.conn = conn
        self.sql = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, params=()):
        self.sql = sql
        self.conn.statements.append(sql)

    def fetchone(self):
        return (self.conn.tables_exist,)

    def fetchall(self):
        if "FROM " + store.SAMPLES in self.sql:
            return [(1.5, "cdc_watchdog", "r1", {"dlq_depth": 0}, [])]
        return [(2.5, "cdc_reconcile", "r2", "ok", "no drift", {"drift_total": 0})]


def lookups(conn: RecordingConnection) -> int:
    return sum("to_regclass" in sql for sql in conn.statements)


def test_the_history_looks_the_tables_up_once_and_reads_every_kind():
    conn = RecordingConnection(tables_exist=True)
    samples, events = store.read_history(conn, timedelta(hours=6))
    assert lookups(conn) == 1
    assert len(conn.statements) == 2 + len(store.EVENT_KINDS)
    assert samples == [{"at": 1.5, "dag_id": "cdc_watchdog", "run_id": "r1", "metrics": {"dlq_depth": 0},
                        "breaches": []}]
    assert set(events) == set(store.EVENT_KINDS)
    assert events["alert"] == [{"at": 2.5, "dag_id": "cdc_reconcile", "run_id": "r2", "severity": "ok",
                                "title": "no drift", "summary": {"drift_total": 0}}]


def test_before_the_first_write_the_history_is_empty_after_one_lookup():
    conn = RecordingConnection(tables_exist=False)
    assert store.read_history(conn, timedelta(hours=6)) == ([], {kind: [] for kind in store.EVENT_KINDS})
    assert conn.statements and lookups(conn) == len(conn.statements) == 1
