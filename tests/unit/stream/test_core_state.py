"""The core query's driver-side state and wire format: content catalogue, waiting room, change log."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from pyspark.sql import functions as F

from cdc_stream import change_log, schemas
from cdc_stream.catalogue import ContentCatalogue
from cdc_stream.waiting_room import WaitingEvent, WaitingRoom

A, B = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"


def content(cid, op, position, length=60):
    return {"id": cid, "op": op, "position": position, "length_seconds": length}


def test_catalogue_keeps_the_highest_position_per_content():
    catalogue = ContentCatalogue()
    assert catalogue.apply([content(A, "c", 10, 60), content(A, "u", 30, 90), content(A, "u", 20, 75)]) == 2
    assert catalogue.knows(A) and not catalogue.knows(B) and not catalogue.knows(None)
    assert catalogue.apply([content(A, "u", 30, 90)]) == 0  # a replay changes nothing
    catalogue.apply([content(A, "d", 40)])
    assert not catalogue.knows(A) and len(catalogue) == 0
    catalogue.apply([content(A, "c", 35, 1)])  # older than the delete
    assert not catalogue.knows(A)


def test_catalogue_frame_is_one_row_per_live_content_and_rebuilt_after_changes(spark):
    catalogue = ContentCatalogue()
    catalogue.apply([content(A, "c", 1, 60), content(B, "c", 2, 30), content(A, "u", 3, 90)])
    first = catalogue.frame(spark)
    assert sorted(map(tuple, first.collect())) == [(A, 90), (B, 30)]
    assert catalogue.frame(spark) is first
    catalogue.apply([content(B, "d", 4)])
    assert [tuple(r) for r in catalogue.frame(spark).collect()] == [(A, 90)]


def waiting_json(offset, content_id=A, pending_since_ms=None):
    body = {"key": '{"id": 1}', "value": "{}", "topic": "t", "partition": 0, "offset": offset,
            "timestamp_ms": 5, "content_id": content_id}
    if pending_since_ms is not None:
        body["pending_since_ms"] = pending_since_ms
    return json.dumps(body)


def test_waiting_room_releases_known_content_and_expired_waits():
    room = WaitingRoom("unused:9092", "pending", max_wait_s=60)
    assert room.settle([], [waiting_json(1, A), waiting_json(2, B, pending_since_ms=500)], now_ms=100_000) == 0
    assert len(room) == 2 and room.oldest_since_ms() == 500
    due = room.due(lambda cid: cid == A, now_ms=100_000)
    # A's content is known; B waited 99.5 s > 60 s.
    assert sorted(e.offset for e in due) == [1, 2]
    assert [room.is_expired(e, 100_000) for e in sorted(due, key=lambda e: e.offset)] == [False, True]
    assert [e.offset for e in room.due(lambda cid: False, now_ms=100_000)] == [2]


def test_a_released_event_that_is_parked_again_keeps_its_first_wait():
    room = WaitingRoom("unused:9092", "pending", max_wait_s=60)
    room.settle([], [waiting_json(1)], now_ms=1_000)
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
    event_ts = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    change = (7, "u", 2**40, 1_767_268_800_000, A, B, "play", event_ts, 1500, "tv", '{"k": "é"}', 60, 0.025)
    changes = spark.createDataFrame([change], schemas.CHANGE)
    records = change_log.event_change_records(changes, "changes")
    assert [(r.topic, r.key, r.position) for r in records.collect()] == [("changes", "7", 2**40)]
    back = change_log.read_event_changes(records.select(F.col("value").cast("binary").alias("value")))
    assert back.schema == schemas.CHANGE
    assert back.collect() == changes.collect()


def test_waiting_records_are_keyed_by_their_source_record(spark):
    row = ('{"id": 1}', "{}", "events", 2, 40, datetime(2026, 1, 1, tzinfo=timezone.utc), None, A)
    waiting = spark.createDataFrame([row], schemas.WAITING_RECORD)
    [record] = change_log.waiting_records(waiting, "pending").collect()
    assert (record.topic, record.key) == ("pending", "events/2/40")
    event = WaitingEvent.from_json(record.value, parked_at_ms=99)
    assert (event.offset, event.content_id, event.pending_since_ms, event.timestamp_ms) == (
        40, A, 99, 1_767_225_600_000)
