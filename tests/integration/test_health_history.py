"""The health history in the stack's PostgreSQL: what the watchdog and the rounds write, and what
the UI page reads."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from cdc_platform.health import recorder, store

pytestmark = pytest.mark.integration


def count(pg_conn, table: str, where: str = "true", params: tuple = ()) -> int:
    with pg_conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table} WHERE {where}", params)
        return cur.fetchone()[0]


def test_the_first_write_creates_the_tables_and_reads_come_back_in_order(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {store.SCHEMA} CASCADE")
    assert store.read_samples(pg_conn, timedelta(hours=1)) == []
    assert store.read_events(pg_conn, "alert") == []

    store.record_sample(pg_conn, {"connector_state": "RUNNING", "committed_messages": {"core": 7}},
                        [{"check": "dlq_depth", "message": "x"}], dag_id="cdc_watchdog", run_id="r1")
    store.record_sample(pg_conn, {"connector_state": "PAUSED"}, [], dag_id="cdc_watchdog", run_id="r2")

    samples = store.read_samples(pg_conn, timedelta(hours=1))
    assert [s["run_id"] for s in samples] == ["r1", "r2"]
    assert samples[0]["metrics"] == {"connector_state": "RUNNING", "committed_messages": {"core": 7}}
    assert samples[0]["breaches"] == [{"check": "dlq_depth", "message": "x"}]
    assert samples[0]["at"] <= samples[1]["at"]


def test_events_are_read_newest_first_per_kind(pg_conn):
    for n in range(3):
        store.record_event(pg_conn, "dlq_round", f"round {n}", {"delivered": n}, severity="ok",
                           dag_id="cdc_dlq_reprocess", run_id=f"run-{n}")
    store.record_event(pg_conn, "alert", "an alert", {"source": "test"}, severity="error")
    rounds = store.read_events(pg_conn, "dlq_round", limit=2)
    assert [(e["title"], e["summary"]) for e in rounds] == [("round 2", {"delivered": 2}), ("round 1", {"delivered": 1})]
    assert store.read_events(pg_conn, "alert")[0]["title"] == "an alert"
    with pytest.raises(ValueError, match="unknown event kind"):
        store.record_event(pg_conn, "nonsense", "t", {})


def test_each_sample_prunes_what_is_older_than_the_retention(pg_conn):
    store.ensure_schema(pg_conn)
    with pg_conn.cursor() as cur:
        cur.execute(f"INSERT INTO {store.SAMPLES} (sampled_at, metrics, breaches) "
                    "VALUES (now() - interval '8 days', '{}', '[]')")
        cur.execute(f"INSERT INTO {store.EVENTS} (at, kind, title, summary) "
                    "VALUES (now() - interval '8 days', 'alert', 'old', '{}')")
    old = "extract(epoch FROM now() - {}) > 7 * 86400"
    assert count(pg_conn, store.SAMPLES, old.format("sampled_at")) == 1
    store.record_sample(pg_conn, {}, [], retention=timedelta(days=7))
    assert count(pg_conn, store.SAMPLES, old.format("sampled_at")) == 0
    assert count(pg_conn, store.EVENTS, old.format("at")) == 0
    assert count(pg_conn, store.SAMPLES) >= 1


def test_the_recorder_writes_through_the_airflow_connection(pg_conn, airflow_connections):
    assert recorder.record_event("reconcile", "no drift", {"drift_total": 0}, severity="ok",
                                 dag_id="cdc_reconcile", run_id="manual__recorder-test")
    newest = store.read_events(pg_conn, "reconcile", limit=1)[0]
    assert (newest["run_id"], newest["summary"]) == ("manual__recorder-test", {"drift_total": 0})


class Collected(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_a_history_that_cannot_be_written_is_logged_and_never_raises(airflow_connections):
    collected = Collected()
    logging.getLogger(recorder.__name__).addHandler(collected)
    try:
        assert recorder.record_event("alert", "t", {}, postgres_conn_id="no_such_connection") is False
    finally:
        logging.getLogger(recorder.__name__).removeHandler(collected)
    assert any("alert event not recorded" in m for m in collected.messages), collected.messages
