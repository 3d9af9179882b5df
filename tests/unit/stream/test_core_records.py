"""The core query's one pass over a batch of both Debezium topics and the repairs topic: every
record becomes one output record, the content topic's pass as they are for the content
transforms, and the repairs topic's pass as the event changes they already are."""
from __future__ import annotations

import json

from tests.unit.stream import cdc_messages as m
from tests.unit.stream.test_transforms import NOW, content_lookup
from cdc_platform import names
from cdc_stream import change_log, schemas
from cdc_stream.core import CoreTopics, content_records, core_records
from cdc_stream.waiting_room import WaitingEvent

TOPICS = CoreTopics(events=names.EVENTS_TOPIC, content=names.CONTENT_TOPIC, event_changes="log.events",
                    content_changes="log.content", quarantine="quarantine", pending="pending",
                    repairs=names.REPAIR_CHANGES_TOPIC)
SWEEP = {"id": 77, "op": "d", "position": 9_000, "source_ts_ms": 1, "content_id": m.CONTENT_ID, "user_id": None,
         "event_type": None, "event_ts": None, "duration_ms": None, "device": "tv", "raw_payload": None,
         "length_seconds": None, "engagement_pct": 0.5}


def source(spark):
    rows = [
        (m.encode({"id": 1}), m.encode(m.insert(m.event_row(1), lsn=100)), names.EVENTS_TOPIC, 0, 0, NOW),
        (m.encode({"id": m.CONTENT_ID}), m.encode(m.insert(m.content_row(), lsn=90, table="content")),
         names.CONTENT_TOPIC, 0, 5, NOW),
        (m.encode("77"), m.encode(SWEEP), names.REPAIR_CHANGES_TOPIC, 0, 3, NOW),
        (m.encode({"id": 2}), m.encode("not json"), names.EVENTS_TOPIC, 1, 0, NOW),
    ]
    return spark.createDataFrame(rows, schemas.KAFKA_SOURCE)


def test_each_record_of_the_batch_becomes_one_output_record_of_its_kind(spark):
    out = {(r.topic, r.key): r for r in core_records(source(spark), content_lookup(spark), TOPICS).collect()}
    assert sorted(topic for topic, _ in out) == sorted(["log.events", "log.events", names.CONTENT_TOPIC, "quarantine"])
    event = change_log.decode(out[("log.events", "1")].value)
    assert (event["id"], event["position"], event["engagement_pct"]) == (1, 100, 0.5)
    # The repair passes as written: no envelope, no second encoding.
    assert json.loads(out[("log.events", "77")].value) == SWEEP
    [quarantined] = [r for (topic, _), r in out.items() if topic == "quarantine"]
    assert out[("log.events", "77")].reason is None and quarantined.reason == "unparseable_json"
    passed = out[(names.CONTENT_TOPIC, f"{names.CONTENT_TOPIC}/0/5")]
    assert passed.reason is None and passed.position is None


def test_a_passed_content_record_goes_through_the_content_transforms_as_its_source_record(spark):
    [passed] = [r.value for r in core_records(source(spark), content_lookup(spark), TOPICS).collect()
                if r.topic == names.CONTENT_TOPIC]
    row = WaitingEvent.from_json(passed, parked_at_ms=0).source_record(expired=False)
    [record] = content_records(spark.createDataFrame([row], schemas.SOURCE_RECORD), TOPICS).collect()
    assert record.topic == "log.content"
    change = change_log.decode(record.value)
    assert (change["id"], change["op"], change["length_seconds"], change["position"]) == (m.CONTENT_ID, "c", 60, 90)
