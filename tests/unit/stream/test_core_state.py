"""The core query's driver-side state and wire format: content catalogue, waiting room, change log."""
from __future__ import annotations

import json
from datetime import datetime, timezone


from cdc_stream import change_log, schemas, transforms
from cdc_stream.catalogue import latest_content
from cdc_stream.waiting_room import WaitingEvent, WaitingRoom

A, B = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"


def content(cid, op, position, length=60):
    return (cid, op, position, "slug", "Title", "video", length, datetime(2025, 12, 1, tzinfo=timezone.utc))


def test_latest_content_keeps_the_highest_position_per_id_and_forgets_deleted_content(spark):
    changes = spark.createDataFrame([
        content(A, "c", 10, 60), content(A, "u", 30, 90), content(A, "u", 20, 75), content(A, "u", 30, 90),
        content(B, "c", 1, 30), content(B, "d", 40), content(B, "c", 35, 1),  # recreated before the delete
    ], schemas.CONTENT_CHANGE)
    lookup = latest_content(changes)
    assert lookup.schema == schemas.CONTENT_LOOKUP
    assert [tuple(r) for r in lookup.collect()] == [(A, 90)]


def waiting_json(offset, content_id=A, pending_since_ms=None):
    body = {"key": '{"id": 1}', "value": "{}", "topic": "t", "partition": 0, "offset": offset,
            "timestamp_ms": 5, "content_id": content_id}
    if pending_since_ms is not None:
        body["pending_since_ms"] = pending_since_ms
    return json.dumps(body)


def test_waiting_room_releases_known_content_and_expired_waits():
    room = WaitingRoom("unused:9092", "pending", max_wait_s=60)
    room.park([waiting_json(1, A), waiting_json(2, B, pending_since_ms=500)], now_ms=100_000)
    assert len(room) == 2 and room.oldest_since_ms() == 500
    due = room.due(lambda cid: cid == A, now_ms=100_000)
    # A's content is known; B waited 99.5 s > 60 s.
    assert sorted(e.offset for e in due) == [1, 2]
    assert [room.is_expired(e, 100_000) for e in sorted(due, key=lambda e: e.offset)] == [False, True]
    assert [e.offset for e in room.due(lambda cid: False, now_ms=100_000)] == [2]


def test_a_released_event_that_is_parked_again_keeps_its_first_wait():
    room = WaitingRoom("unused:9092", "pending", max_wait_s=60)
    room.park([waiting_json(1)], now_ms=1_000)
    [event] = room.due(lambda cid: True, now_ms=2_000)
    # Parked again by the batch that released it: nothing is resolved, nothing is produced.
    assert room.settle([event], [waiting_json(1, pending_since_ms=event.pending_since_ms)], now_ms=2_000) == 0
    assert room.oldest_since_ms() == 1_000


def test_waiting_event_round_trips_as_a_source_record():
    event = WaitingEvent.from_json(waiting_json(9), parked_at_ms=1234)
    assert event.record_id == "t/0/9" and event.pending_since_ms == 1234
    record = event.source_record(expired=True)
    assert record[5] == datetime(1970, 1, 1, 0, 0, 0, 5000, tzinfo=timezone.utc)
    assert record[6:] == (1234, True)


def test_change_log_round_trip_keeps_every_column_and_microseconds(spark):
    from tests.unit.stream import cdc_messages as m

    event_ts = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    row = m.event_row(7, content_id=A, user_id=B, event_ts=event_ts, duration_ms=1500, device="tv", raw_payload=None)
    source = spark.createDataFrame(
        [(m.encode({"id": 7}), m.encode(m.insert(row, 2**40)), "events", 0, 3, event_ts)], schemas.KAFKA_SOURCE)
    lookup = spark.createDataFrame([(A, 60)], schemas.CONTENT_LOOKUP)
    [change] = transforms.process_events(source, lookup).changes.collect()
    [record] = change_log.event_records(transforms.classify_events(source, lookup), changes_topic="changes",
                                        quarantine_topic="q", pending_topic="p").collect()
    assert (record.topic, record.key, record.position, record.reason) == ("changes", "7", 2**40, None)
    decoded = change_log.decode(record.value.encode())
    assert list(decoded) == [f.name for f in schemas.CHANGE.fields]  # nulls included
    assert decoded == dict(change.asDict(), event_ts=1_767_268_800_123_456)
    assert decoded["raw_payload"] is None and decoded["position"] == 2**40


def test_every_classified_event_goes_to_its_own_topic_with_its_own_key(spark):
    from tests.unit.stream import cdc_messages as m

    captured = datetime(2026, 1, 2, tzinfo=timezone.utc)  # after the rows' event_ts
    messages = [(1, m.insert(m.event_row(1, content_id=A), 10)), (2, m.insert(m.event_row(2, content_id=B), 11)),
                (3, "garbage")]
    source = spark.createDataFrame([(m.encode({"id": k}), m.encode(v), "events", 2, 40 + k, captured)
                                    for k, v in messages], schemas.KAFKA_SOURCE)
    lookup = spark.createDataFrame([(A, 60)], schemas.CONTENT_LOOKUP)
    records = {r.topic: r for r in change_log.event_records(
        transforms.classify_events(source, lookup), changes_topic="changes", quarantine_topic="quarantine",
        pending_topic="pending").collect()}
    assert set(records) == {"changes", "pending", "quarantine"}
    assert (records["changes"].key, records["changes"].position) == ("1", 10)
    assert (records["quarantine"].key, records["quarantine"].reason) == ('{"id": 3}', "unparseable_json")
    assert json.loads(records["quarantine"].value)["value"] == "garbage"
    assert (records["pending"].key, records["pending"].reason) == ("events/2/42", None)
    event = WaitingEvent.from_json(records["pending"].value, parked_at_ms=99)
    assert (event.offset, event.content_id, event.pending_since_ms, event.timestamp_ms) == (
        42, B, 99, int(captured.timestamp() * 1000))
