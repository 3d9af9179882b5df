"""Hostile source rows on the live stack: every value PostgreSQL can hold either flows to every
sink or is quarantined with its reason, and the stream keeps running for the rows after it."""
from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from cdc_local import sink_verification
from cdc_platform import names, semantics, stream_progress
from tests.e2e.checks import (assert_rest_holds_each_change_once, assert_sinks_match_postgres, content_ids,
                              watchdog_report)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EMOJI_PAYLOAD = json.dumps({"title": "Café ☕ — 日本語 🎬", "tags": ["ñ", "🚀"]}, ensure_ascii=False)
# Large, under Kafka's default 1 MB message: the over-1-MB row is a fault of its own.
LARGE_PAYLOAD = json.dumps({"blob": "🎞" * 60_000 + "x" * 100_000}, ensure_ascii=False)


def insert_content(cur, length_seconds: int | None, title: str = "Hostile ✨") -> str:
    content_id = str(uuid.uuid4())
    cur.execute(f"INSERT INTO {names.PG_CONTENT_TABLE} (id, slug, title, content_type, length_seconds, publish_ts) "
                "VALUES (%s, %s, %s, 'video', %s, now())", (content_id, f"hostile-{content_id[:8]}", title,
                                                            length_seconds))
    return content_id


def insert_event(cur, content_id: str, **overrides) -> int:
    row = {"content_id": content_id, "user_id": str(uuid.uuid4()), "event_type": "play",
           "event_ts": datetime.now(timezone.utc).replace(tzinfo=None), "duration_ms": 30_000, "device": "mobile",
           "raw_payload": '{"src": "hostile"}', **overrides}
    cur.execute(f"INSERT INTO {names.PG_EVENTS_TABLE} (content_id, user_id, event_type, event_ts, duration_ms, device, "
                "raw_payload) VALUES (%(content_id)s, %(user_id)s, %(event_type)s, %(event_ts)s, %(duration_ms)s, "
                "%(device)s, %(raw_payload)s) RETURNING id", row)
    return cur.fetchone()[0]


def test_hostile_rows_are_quarantined_with_their_reason_and_good_rows_flow_exactly(
        stream, stack_env, pg, cassandra, api):
    stream_progress.wait_caught_up(stack_env, timeout=300)
    quarantined_before = Counter(sink_verification.quarantine_reasons(stack_env["KAFKA_BOOTSTRAP"]))
    known = content_ids(pg)
    far_future = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=2)
    cases = [  # (column overrides, the reason it is quarantined for, or None: it flows)
        ({"event_ts": "-infinity"}, semantics.OUT_OF_RANGE_TIMESTAMP),
        ({"event_ts": "infinity"}, semantics.OUT_OF_RANGE_TIMESTAMP),
        ({"event_ts": "0044-03-15 BC"}, semantics.OUT_OF_RANGE_TIMESTAMP),
        ({"event_ts": far_future}, semantics.FUTURE_EVENT_TS),
        ({"event_ts": datetime(1970, 1, 1)}, None),
        ({"duration_ms": -5}, semantics.NEGATIVE_DURATION),
        ({"duration_ms": 2**31 - 1}, None),
        ({"duration_ms": None}, None),
        ({"event_type": "   "}, semantics.MISSING_REQUIRED_FIELD),
        ({"event_type": "  PLAY ", "device": " iPad "}, None),
        ({"event_type": "Regarder 🎬", "device": "Toaster 🍞", "raw_payload": EMOJI_PAYLOAD}, None),
        ({"device": None, "raw_payload": None}, None),
        ({"raw_payload": LARGE_PAYLOAD}, None),
    ]
    expected_reasons: Counter = Counter()
    changes: dict[int, int] = {}
    with pg.cursor() as cur:
        odd_lengths = [insert_content(cur, length) for length in (-60, 0, None)]
        for overrides, reason in cases:
            rid = insert_event(cur, known[0], **overrides)
            changes[rid] = 0 if reason else 1
            if reason:
                expected_reasons[reason] += 1
        for content_id in odd_lengths:
            changes[insert_event(cur, content_id, duration_ms=45_000)] = 1
        # Deleting a row whose insert was quarantined: the delete still reaches every sink.
        doomed = insert_event(cur, known[0], event_ts="-infinity")
        expected_reasons[semantics.OUT_OF_RANGE_TIMESTAMP] += 1
        cur.execute(f"DELETE FROM {names.PG_EVENTS_TABLE} WHERE id = %s", (doomed,))
        changes[doomed] = 1
        # An update that moves an event to another content.
        moved = insert_event(cur, known[0])
        cur.execute(f"UPDATE {names.PG_EVENTS_TABLE} SET content_id = %s WHERE id = %s", (known[1], moved))
        changes[moved] = 2
        # Good rows written after the hostile ones must flow too.
        for _ in range(50):
            changes[insert_event(cur, known[2])] = 1
    pg.commit()

    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    assert_rest_holds_each_change_once(api, changes)
    deleted = api.events_for_row(doomed)
    assert [e["event"]["op"] for e in deleted] == ["d"] and deleted[0]["event"]["event_ts"] is None
    quarantined = Counter(sink_verification.quarantine_reasons(stack_env["KAFKA_BOOTSTRAP"])) - quarantined_before
    assert quarantined == expected_reasons
    with pg.cursor() as cur:
        cur.execute(f"SELECT id FROM {names.PG_EVENTS_TABLE} WHERE content_id = ANY(%s::uuid[])", (odd_lengths,))
        odd_rows = [r[0] for r in cur.fetchall()]
    pg.rollback()
    rows = cassandra.execute(f"SELECT id, engagement_pct FROM {names.CASSANDRA_KEYSPACE}.{names.CASSANDRA_EVENTS_TABLE} "
                             f"WHERE id IN ({','.join(map(str, odd_rows))})")
    assert sorted((r.id, r.engagement_pct) for r in rows) == [(rid, None) for rid in sorted(odd_rows)]


def test_a_burst_of_100000_deletes_reaches_every_sink_and_leaves_only_expiring_fences(
        stream, stack_env, pg, cassandra, api):
    import random

    import redis

    known = content_ids(pg)
    with pg.cursor() as cur:
        cur.execute(f"INSERT INTO {names.PG_EVENTS_TABLE} (content_id, user_id, event_type, event_ts, duration_ms, "
                    "device, raw_payload) SELECT %s::uuid, gen_random_uuid(), 'play', now() - mod(g, 300) * "
                    "interval '1 second', mod(g, 600000), 'tv', '{}' FROM generate_series(1, 100000) g RETURNING id",
                    (known[0],))
        ids = [r[0] for r in cur.fetchall()]
    pg.commit()
    comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=600)
    assert comparison.equal, comparison.summary()
    with pg.cursor() as cur:
        cur.execute(f"DELETE FROM {names.PG_EVENTS_TABLE} WHERE id = ANY(%s)", (ids,))
    pg.commit()

    comparison = sink_verification.wait_for_cassandra_to_match(pg, cassandra, timeout=600)
    assert comparison.equal, comparison.summary()
    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    sample = random.Random(5).sample(ids, 1000)
    assert_rest_holds_each_change_once(api, {rid: 2 for rid in sample})
    client = redis.Redis.from_url(stack_env["REDIS_URL"], decode_responses=True)
    pipe = client.pipeline(transaction=False)
    for rid in sample:
        pipe.pttl(f"{names.REDIS_ROW_PREFIX}{rid}")
    ttls = pipe.execute()
    # Each deleted row keeps only a fence, and the fence expires after the replay horizon.
    assert all(0 < ttl <= semantics.DELETED_ROW_FENCE_TTL_MS for ttl in ttls), sorted(ttls)[:5]


def json_payload_of(size: int) -> str:
    return json.dumps({"blob": "x" * size})


def test_rows_over_a_megabyte_flow_and_a_row_over_the_limit_is_quarantined_while_cdc_goes_on(
        stream, stack_env, pg, cassandra, api):
    """Three times Kafka's default message size flows to every sink; a row over the limit no
    longer fails the connector task again and again: it is quarantined as oversized_value, and
    the changes after it flow."""
    stream_progress.wait_caught_up(stack_env, timeout=300)
    quarantined_before = Counter(sink_verification.quarantine_reasons(stack_env["KAFKA_BOOTSTRAP"]))
    known = content_ids(pg)
    big_payload = json_payload_of(3 * 1024 * 1024)
    huge_payload = json_payload_of(semantics.MAX_CAPTURED_VALUE_BYTES + 1024 * 1024)
    with pg.cursor() as cur:
        big = insert_event(cur, known[0], raw_payload=big_payload)
        huge = insert_event(cur, known[0], raw_payload=huge_payload)
        shrunk = insert_event(cur, known[0], raw_payload=huge_payload)
    pg.commit()
    with pg.cursor() as cur:
        # Before- and after-image together (6 MiB) still fit.
        cur.execute(f"UPDATE {names.PG_EVENTS_TABLE} SET duration_ms = 1234 WHERE id = %s", (big,))
        # The huge before-image is given up; the update carries the new, small row.
        cur.execute(f"UPDATE {names.PG_EVENTS_TABLE} SET raw_payload = %s WHERE id = %s", ('{"small": 1}', shrunk))
        after = [insert_event(cur, known[1]) for _ in range(20)]
    pg.commit()

    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    assert_rest_holds_each_change_once(api, {big: 2, huge: 0, shrunk: 1, **{rid: 1 for rid in after}})
    quarantined = Counter(sink_verification.quarantine_reasons(stack_env["KAFKA_BOOTSTRAP"])) - quarantined_before
    assert quarantined == Counter({semantics.OVERSIZED_VALUE: 2})
    stored = cassandra.execute(f"SELECT id, duration_ms, raw_payload FROM {names.CASSANDRA_KEYSPACE}."
                               f"{names.CASSANDRA_EVENTS_TABLE} WHERE id IN ({big}, {huge}, {shrunk})")
    by_id = {row.id: row for row in stored}
    assert set(by_id) == {big, shrunk}
    assert by_id[big].duration_ms == 1234 and json.loads(by_id[big].raw_payload) == json.loads(big_payload)
    assert json.loads(by_id[shrunk].raw_payload) == {"small": 1}
    report = watchdog_report(stream, stack_env)
    assert (report["metrics"]["connector_state"], report["metrics"]["connector_tasks"]) == ("RUNNING", ["RUNNING"])


def schema_drift_seen(airflow, stack_env) -> dict:
    return watchdog_report(airflow, stack_env)["metrics"]["schema_drift"]


def restore_events_table(pg) -> None:
    """Undo this module's schema changes whatever the test got to."""
    pg.rollback()
    with pg.cursor() as cur:
        cur.execute(f"ALTER TABLE {names.PG_EVENTS_TABLE} DROP COLUMN IF EXISTS referrer")
        cur.execute("SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = 'kind'",
                    (names.PG_EVENTS_TABLE,))
        if cur.fetchone():
            cur.execute(f"ALTER TABLE {names.PG_EVENTS_TABLE} RENAME COLUMN kind TO event_type")
    pg.commit()


def test_columns_added_and_dropped_while_streaming_are_reported_and_nothing_is_lost(
        stream, stack_env, pg, cassandra, api):
    try:
        known = content_ids(pg)
        table = names.PG_EVENTS_TABLE
        quarantined_before = Counter(sink_verification.quarantine_reasons(stack_env["KAFKA_BOOTSTRAP"]))
        changes: dict[int, int] = {}
        with pg.cursor() as cur:
            cur.execute(f"ALTER TABLE {table} ADD COLUMN referrer TEXT")
            for _ in range(20):
                rid = insert_event(cur, known[0])
                cur.execute(f"UPDATE {table} SET referrer = 'newsletter ✉' WHERE id = %s", (rid,))
                changes[rid] = 2
        pg.commit()
        assert schema_drift_seen(stream, stack_env) == {table: {"added": ["referrer"], "dropped": [], "retyped": []}}
        assert_sinks_match_postgres(stack_env, stream, pg, cassandra)

        # A required column gone (renamed away): its changes are quarantined, and the drift says why.
        with pg.cursor() as cur:
            cur.execute(f"ALTER TABLE {table} DROP COLUMN referrer")
            cur.execute(f"ALTER TABLE {table} RENAME COLUMN event_type TO kind")
            cur.execute(f"INSERT INTO {table} (content_id, user_id, kind, event_ts, duration_ms, device) "
                        "SELECT %s, gen_random_uuid(), 'play', now() AT TIME ZONE 'utc', 1000, 'tv' "
                        "FROM generate_series(1, 10) RETURNING id", (known[0],))
            orphans = [r[0] for r in cur.fetchall()]
        pg.commit()
        assert schema_drift_seen(stream, stack_env) == {table: {"added": ["kind"], "dropped": ["event_type"], "retyped": []}}
        stream_progress.wait_caught_up(stack_env, timeout=300)
        quarantined = Counter(sink_verification.quarantine_reasons(stack_env["KAFKA_BOOTSTRAP"])) - quarantined_before
        assert quarantined == Counter({semantics.MISSING_REQUIRED_FIELD: len(orphans)})

        # The fix at the source: the column back, the rows touched; their changes flow.
        with pg.cursor() as cur:
            cur.execute(f"ALTER TABLE {table} RENAME COLUMN kind TO event_type")
            cur.execute(f"UPDATE {table} SET duration_ms = duration_ms + 1 WHERE id = ANY(%s)", (orphans,))
        pg.commit()
        changes.update({rid: 1 for rid in orphans})  # the quarantined inserts never reach the REST API
        assert schema_drift_seen(stream, stack_env) == {}
        assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
        assert_rest_holds_each_change_once(api, changes)
    finally:
        restore_events_table(pg)
