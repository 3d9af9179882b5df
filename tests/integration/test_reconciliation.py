"""Reconciliation against the real Cassandra and Redis: zero drift while the sinks disagree
only because one is ahead, injected drift found with the right numbers and repaired to zero.

Writes go to a dedicated keyspace (built from include/cql/engagement_schema.cql, dropped at
the end) and a dedicated Redis database flushed per test, never to the stream's own. Both
sinks are written the way the stream writes them: Cassandra USING TIMESTAMP <position>,
Redis through the fenced apply_changes.
"""
from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests

from cdc_platform import names, provisioning
from cdc_platform.aggregates import reconciliation as rc
from cdc_platform.aggregates import (Change, Row, apply_changes, diff, establish_state_marker, read_snapshot,
                                     read_watermark, recompute, state_marker_present)
from cdc_platform.aggregates.store import device_key

pytestmark = pytest.mark.integration

TEST_DB = 8
TEST_KEYSPACE = "engagement_it_reconcile"
MINUTE = 60_000
T0 = 1_767_268_800_000          # 2026-01-01T12:00Z
POSITION_BASE = 10**12          # LSN-sized: far above any row id, far below the wall clock in µs
CONTENTS = [str(uuid.UUID(int=n)) for n in (11, 22, 33)]
DEVICES = ["mobile", "desktop", "tablet", None]
PCTS = [None, 0.05, 1 / 3, 0.5, 0.7, 0.95, 1.0]


def schema_statements(keyspace: str) -> list[str]:
    """The project's CQL schema, retargeted to ``keyspace``."""
    ks = re.escape(names.CASSANDRA_KEYSPACE)
    text = provisioning.CQL_SCHEMA_FILE.read_text()
    text = re.sub(rf"(KEYSPACE IF NOT EXISTS\s+){ks}\b", rf"\g<1>{keyspace}", text)
    text = re.sub(rf"\b{ks}\.", f"{keyspace}.", text)
    return provisioning.sql_statements(text)


def url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture(scope="module")
def keyspace(cassandra_session):
    for statement in schema_statements(TEST_KEYSPACE):
        cassandra_session.execute(statement, timeout=60)
    yield TEST_KEYSPACE
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {TEST_KEYSPACE}", timeout=120)


@pytest.fixture(scope="module")
def db(stack_env):
    client = redis.Redis.from_url(url_with_db(stack_env["REDIS_URL"], TEST_DB), decode_responses=True)
    assert client.connection_pool.connection_kwargs["db"] == TEST_DB
    yield client
    client.flushdb()
    client.close()


class Sinks:
    """Both sinks, written as the stream writes them; `latest` is the truth (Postgres's rows)."""

    def __init__(self, session, keyspace: str, client: redis.Redis):
        self.session, self.keyspace, self.client = session, keyspace, client
        self.latest: dict[int, Change] = {}
        table = f"{keyspace}.{names.CASSANDRA_EVENTS_TABLE}"
        self._upsert = session.prepare(
            f"INSERT INTO {table} (id, content_id, user_id, event_type, event_ts, duration_ms, device, raw_payload, "
            "engagement_pct, source_lsn, source_op, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "USING TIMESTAMP ?")
        self._delete = session.prepare(f"DELETE FROM {table} USING TIMESTAMP ? WHERE id = ?")

    def cassandra(self, *changes: Change) -> None:
        for c in changes:
            if c.op == "d":
                self.session.execute(self._delete, (c.position, c.id))
            else:
                self.session.execute(self._upsert, (
                    c.id, uuid.UUID(c.content_id) if c.content_id else None, uuid.UUID(int=c.id), "play",
                    c.event_ts_ms, 1_000, c.device, '{"n": 1}', c.engagement_pct, c.position, c.op,
                    datetime.now(timezone.utc), c.position))
            seen = self.latest.get(c.id)
            if seen is None or c.position > seen.position:
                self.latest[c.id] = c

    def redis(self, *changes: Change) -> None:
        apply_changes(self.client, changes)

    def both(self, *changes: Change) -> None:
        self.cassandra(*changes)
        self.redis(*random.Random(len(changes)).sample(changes, len(changes)))

    def reconcile(self, **kwargs) -> dict:
        report = rc.reconcile(self.session, self.client, keyspace=self.keyspace, **kwargs)
        assert json.loads(json.dumps(report)) == report
        return report

    def truth(self) -> list[Row]:
        return [Row(c.id, c.content_id, c.event_ts_ms, c.device, c.engagement_pct, position=c.position)
                for c in self.latest.values() if c.op != "d"]

    def assert_redis_is_truth(self) -> None:
        """Redis equals a recompute over the truth, checked without the reconcile code."""
        clock = read_watermark(self.client).max_event_ts_ms
        drift = diff(recompute(self.truth(), window_end_ms=clock), read_snapshot(self.client), tolerance=1e-6)
        assert drift.is_zero, rc.drift_examples(drift)


@pytest.fixture
def sinks(cassandra_session, keyspace, db):
    cassandra_session.execute(f"TRUNCATE {keyspace}.{names.CASSANDRA_EVENTS_TABLE}", timeout=60)
    db.flushdb()
    assert establish_state_marker(db) == "created"  # as provisioning does on an empty Redis
    return Sinks(cassandra_session, keyspace, db)


def change(row_id: int, position: int, op: str = "c", *, content: str | None = CONTENTS[0], minute: int = 0,
           device: str | None = "mobile", pct: float | None = 0.5) -> Change:
    return Change(row_id, op, POSITION_BASE + position, content, T0 + minute * MINUTE + 7_000, device, pct)


def history(rows: int = 40, seed: int = 7) -> list[Change]:
    """Inserts, then updates of some rows and deletes of others, spread over 20 minutes of event time."""
    rnd = random.Random(seed)

    def values():
        return dict(content=rnd.choice(CONTENTS + [None]) if rnd.random() < 0.1 else rnd.choice(CONTENTS),
                    minute=rnd.randint(-20, 0), device=rnd.choice(DEVICES), pct=rnd.choice(PCTS))

    changes = [change(i, i, "r", **values()) for i in range(1, rows + 1)]
    changes += [change(i, 1_000 + i, "u", **values()) for i in range(1, 11)]
    changes += [change(i, 2_000 + i, "d") for i in range(11, 16)]
    return changes


LIVE_ROWS = 40 - 5


def test_consistent_sinks_have_zero_drift(sinks):
    sinks.both(*history())
    report = sinks.reconcile()
    assert report["rows_cassandra"] == LIVE_ROWS
    assert report["rows_settled"] == LIVE_ROWS
    assert report["rows_in_flight"] == 0 and report["rows_stuck"] == 0
    assert report["drift_total"] == 0, report["drift_examples"]
    assert all(v == {"missing": 0, "extra": 0, "mismatched": 0, "max_abs_error": pytest.approx(0, abs=1e-6)}
               for v in report["drift_before"].values())
    assert report["repaired"] is False and report["drift_after_total"] == 0


def test_rows_in_flight_in_either_sink_are_not_drift(sinks):
    sinks.both(*history())
    cassandra_first = [change(16, 3_016, "u", content=CONTENTS[2], pct=0.9), change(100, 3_100), change(17, 3_017, "d")]
    redis_first = [change(18, 3_018, "u", device="tv", minute=-2), change(101, 3_101, pct=None),
                   change(19, 3_019, "d")]
    sinks.cassandra(*cassandra_first)
    sinks.redis(*redis_first)

    report = sinks.reconcile()
    assert report["drift_total"] == 0, report["drift_examples"]
    assert report["rows_in_flight"] == 6 and report["rows_stuck"] == 0
    assert report["in_flight"] == {rc.REDIS_BEHIND: 2, rc.REDIS_AHEAD: 2, rc.UNORDERED: 2}
    assert report["rows_cassandra"] == LIVE_ROWS and report["repaired"] is False  # +1 insert, -1 delete

    sinks.redis(*cassandra_first)
    sinks.cassandra(*redis_first)
    report = sinks.reconcile()
    assert report["drift_total"] == 0 and report["rows_in_flight"] == 0
    assert report["rows_settled"] == LIVE_ROWS
    sinks.assert_redis_is_truth()


def test_injected_drift_is_found_with_its_numbers_and_repaired(sinks):
    sinks.both(*history())
    in_flight = change(200, 5_000, content=CONTENTS[1])
    sinks.cassandra(in_flight)
    counts = dict(sinks.client.zrange(names.REDIS_COUNTS, 0, -1, withscores=True))
    removed, wrong = CONTENTS[0], CONTENTS[2]
    sinks.client.zrem(names.REDIS_COUNTS, removed)
    sinks.client.zincrby(names.REDIS_COUNTS, 3, wrong)
    sinks.client.hset(device_key("ghost"), mapping={"count": 7})

    report = sinks.reconcile()
    assert report["drift_before"]["counts"] == {"missing": 1, "extra": 0, "mismatched": 1,
                                                "max_abs_error": max(counts[removed], 3)}
    assert report["drift_before"]["devices"] == {"missing": 0, "extra": 1, "mismatched": 0, "max_abs_error": 7}
    assert report["drift_examples"]["counts"] == {
        "missing": [removed], "extra": [], "mismatched": [[wrong, counts[wrong], counts[wrong] + 3]]}
    assert report["drift_examples"]["devices"]["extra"] == ["ghost/count"]
    assert report["drift_total"] == 3
    assert report["rows_in_flight"] == 1
    assert report["repaired"] is True and report["drift_after_total"] == 0

    again = sinks.reconcile()
    assert again["drift_total"] == 0 and again["repaired"] is False
    sinks.redis(in_flight)
    sinks.assert_redis_is_truth()


def test_report_only_run_leaves_the_drift(sinks):
    sinks.both(*history())
    sinks.client.zincrby(names.REDIS_COUNTS, 2, CONTENTS[1])
    report = sinks.reconcile(repair=False)
    assert report["drift_total"] == 1 and report["repaired"] is False and report["drift_after_total"] == 1
    assert sinks.reconcile()["drift_after_total"] == 0
    sinks.assert_redis_is_truth()


def test_changes_redis_never_gets_are_repaired_once_settled(sinks):
    sinks.both(*history())
    missed = [change(20, 4_020, "d"), change(21, 4_021, "u", content=CONTENTS[1], pct=0.01)]
    ahead = change(22, 4_022, "u", device="desktop")
    sinks.cassandra(*missed)
    sinks.redis(ahead)

    now = int(time.time() * 1000)
    first = sinks.reconcile(now_ms=now)
    assert first["drift_total"] == 0 and first["rows_in_flight"] == 3
    assert sinks.client.hlen(names.REDIS_RECONCILE_PENDING) == 3

    settled = sinks.reconcile(now_ms=now + rc.DEFAULT_SETTLE_SECONDS * 1000)
    assert settled["stuck"] == {rc.REDIS_BEHIND: 1, rc.REDIS_AHEAD: 0, rc.UNORDERED: 1}
    assert settled["in_flight"] == {rc.REDIS_BEHIND: 0, rc.REDIS_AHEAD: 1, rc.UNORDERED: 0}
    assert settled["drift_total"] > 0
    rows = settled["drift_examples"]["rows"]
    assert rows["extra"] and all(m.startswith("20/") for m in rows["extra"])       # deleted, fence live
    assert rows["mismatched"] and all(m.startswith("21/") for m, _, _ in rows["mismatched"])
    assert not rows["missing"]
    assert settled["repaired"] is True and settled["drift_after_total"] == 0

    sinks.cassandra(ahead)
    sinks.redis(*missed)  # arriving after all: fenced no-ops
    final = sinks.reconcile()
    assert final["drift_total"] == 0 and final["rows_in_flight"] == 0 and final["rows_stuck"] == 0
    assert sinks.client.hlen(names.REDIS_RECONCILE_PENDING) == 0
    sinks.assert_redis_is_truth()


def test_lost_redis_state_is_rebuilt_from_cassandra_in_the_first_run(sinks):
    sinks.both(*history())
    sinks.client.flushdb()
    # The stream goes on after the flush: Redis holds the newest changes, and nothing older.
    newer = [change(1, 5_001, "u", content=CONTENTS[2], pct=0.2), change(41, 5_002)]
    sinks.both(*newer)
    assert establish_state_marker(sinks.client).startswith("missing")

    first = sinks.reconcile()
    assert first["redis_state_lost"] is True
    assert first["rows_stuck"] == LIVE_ROWS - 1 and first["stuck"][rc.REDIS_BEHIND] == LIVE_ROWS - 1
    assert first["drift_before"]["counts"]["missing"] > 0
    assert first["repaired"] is True and first["drift_after_total"] == 0
    assert state_marker_present(sinks.client)
    sinks.assert_redis_is_truth()
    # A replay of the stream's history after the rebuild changes nothing.
    sinks.redis(*history(), *newer)
    again = sinks.reconcile()
    assert again["redis_state_lost"] is False and again["drift_total"] == 0
    sinks.assert_redis_is_truth()


def test_a_report_only_run_on_lost_redis_reports_the_loss_as_drift_and_keeps_it_marked(sinks):
    sinks.both(*history())
    sinks.client.flushdb()
    report = sinks.reconcile(repair=False)
    assert report["redis_state_lost"] is True and report["drift_total"] > 0
    assert not state_marker_present(sinks.client)


class Stream:
    """Two writer threads replaying one change feed into the sinks at different paces, as the
    stream's two queries do: Redis lags Cassandra by up to `lag` changes, in bursts."""

    def __init__(self, sinks: Sinks, changes: list[Change], pause: float = 0.01, lag: int = 12):
        self.sinks, self.changes, self.pause, self.lag = sinks, changes, pause, lag
        self.cassandra_done = 0
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._guard(self._cassandra), daemon=True),
                        threading.Thread(target=self._guard(self._redis), daemon=True)]

    def _guard(self, fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # surfaced by join()
                self.errors.append(exc)
        return run

    def _cassandra(self):
        for c in self.changes:
            self.sinks.cassandra(c)
            self.cassandra_done += 1
            time.sleep(self.pause)

    def _redis(self):
        rnd = random.Random(3)
        done = 0
        while done < len(self.changes):
            target = max(done, self.cassandra_done - rnd.randint(0, self.lag))
            if target > done:
                self.sinks.redis(*self.changes[done:target])
                done = target
            time.sleep(self.pause * rnd.randint(1, 4))
            if self.cassandra_done == len(self.changes):
                self.sinks.redis(*self.changes[done:])
                done = len(self.changes)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def running(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def __exit__(self, *exc):
        for t in self.threads:
            t.join(timeout=60)
        assert not self.errors, self.errors


def live_feed(count: int, seed: int) -> list[Change]:
    rnd = random.Random(seed)
    feed = []
    for n in range(count):
        row_id = rnd.randint(1, 60)
        op = "d" if rnd.random() < 0.15 else "u"
        feed.append(change(row_id, 10_000 + n, op, content=rnd.choice(CONTENTS), minute=rnd.randint(-15, 5),
                           device=rnd.choice(DEVICES), pct=rnd.choice(PCTS)))
    return feed


def test_zero_drift_while_the_stream_writes_both_sinks(sinks):
    sinks.both(*history())
    reports = []
    with Stream(sinks, live_feed(300, seed=11)) as stream:
        while stream.running():
            reports.append(sinks.reconcile())
    assert len(reports) >= 3
    assert [r["drift_total"] for r in reports] == [0] * len(reports), [r["drift_examples"] for r in reports]
    assert any(r["rows_in_flight"] for r in reports), "the writers never left a row in flight"
    final = sinks.reconcile()
    assert final["drift_total"] == 0 and final["rows_in_flight"] == 0
    sinks.assert_redis_is_truth()


def test_injected_drift_is_repaired_while_the_stream_writes(sinks):
    sinks.both(*history())
    with Stream(sinks, live_feed(200, seed=5), pause=0.02):
        sinks.client.zincrby(names.REDIS_COUNTS, 5, "not-a-content")
        report = sinks.reconcile()
    assert report["drift_before"]["counts"]["extra"] == 1 and report["drift_total"] == 1
    assert report["repaired"] is True and report["drift_after_total"] == 0, report
    assert sinks.reconcile()["drift_total"] == 0
    sinks.assert_redis_is_truth()


def stream_writes_before_each_repair(monkeypatch, sinks: Sinks, times: int) -> list[Change]:
    """Make the stream apply a change to Redis right before each of the first `times` repairs,
    the interleaving the watermark condition exists for."""
    real_repair, written = rc.repair_aggregates, []

    def repair_after_a_stream_write(client, expected, **kwargs):
        if len(written) < times:
            written.append(change(300 + len(written), 9_000 + len(written), content=CONTENTS[2]))
            sinks.redis(written[-1])
        return real_repair(client, expected, **kwargs)

    monkeypatch.setattr(rc, "repair_aggregates", repair_after_a_stream_write)
    return written


def test_repair_conflicting_with_the_stream_is_recomputed(sinks, monkeypatch):
    sinks.both(*history())
    sinks.client.zrem(names.REDIS_COUNTS, CONTENTS[0])
    written = stream_writes_before_each_repair(monkeypatch, sinks, times=1)
    report = sinks.reconcile()
    assert report["repair_attempts"] == 2 and report["repaired"] is True and report["drift_after_total"] == 0
    assert report["drift_total"] == 1 and report["in_flight"][rc.UNORDERED] == 1
    sinks.cassandra(*written)
    sinks.assert_redis_is_truth()


def test_repair_gives_up_when_the_stream_keeps_moving(sinks, monkeypatch):
    sinks.both(*history())
    sinks.client.zrem(names.REDIS_COUNTS, CONTENTS[0])
    written = stream_writes_before_each_repair(monkeypatch, sinks, times=rc.DEFAULT_ATTEMPTS)
    report = sinks.reconcile()
    assert report["repaired"] is False and report["repair_attempts"] == rc.DEFAULT_ATTEMPTS
    assert "stream changed Redis" in report["repair_error"]
    assert report["drift_total"] == 1 and report["drift_after_total"] == 1
    # Every change the stream applied meanwhile is still there.
    assert sinks.reconcile()["drift_after_total"] == 0
    sinks.cassandra(*written)
    sinks.assert_redis_is_truth()


def test_task_function_reports_and_alerts(sinks, stack_env, monkeypatch):
    from cdc_platform.orchestration import reconcile as task

    for key, value in stack_env.items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    redis_conn = json.loads(stack_env["AIRFLOW_CONN_REDIS_DEFAULT"])
    redis_conn["extra"] = {**redis_conn.get("extra", {}), "db": TEST_DB}
    monkeypatch.setenv("AIRFLOW_CONN_REDIS_RECONCILE_IT", json.dumps(redis_conn))

    sinks.both(*history())
    sinks.client.zrem(names.REDIS_COUNTS, CONTENTS[1])
    since = datetime.now(timezone.utc).isoformat()
    report = task.run(redis_conn_id="redis_reconcile_it", keyspace=TEST_KEYSPACE)
    assert report["drift_total"] == 1 and report["repaired"] is True and report["drift_after_total"] == 0

    alerts = requests.get(stack_env["ALERTS_URL"], params={"source": "reconcile", "since": since}, timeout=10).json()
    assert len(alerts) == 1
    assert alerts[0]["severity"] == "warning" and "1 drifted member(s)" in alerts[0]["title"]
    assert alerts[0]["details"]["drift_before"]["counts"]["missing"] == 1

    clean = task.run(redis_conn_id="redis_reconcile_it", keyspace=TEST_KEYSPACE)
    assert clean["drift_total"] == 0
    assert len(requests.get(stack_env["ALERTS_URL"], params={"source": "reconcile", "since": since},
                            timeout=10).json()) == 1
