"""DLQ entries: the JSON contract, scheduling, and the audit log."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from cdc_platform.delivery.dlq import (
    DLQ_SOURCE,
    DlqEntry,
    DlqEntryError,
    append_audit,
    audit_line,
    default_audit_log,
    entries_from_failures,
    next_attempt_at,
)
from cdc_platform.delivery.rest_client import DeliveryItem, FailedItem

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
EVENT = {"id": 7, "position": 123456, "op": "u", "event_ts": "2026-03-01T11:59:00+00:00", "engagement_pct": 0.5}


def entry(**overrides) -> DlqEntry:
    values = dict(idempotency_key="7:123456", event=EVENT, error="HTTP 503: down", attempts=2,
                  first_failed_at=NOW - timedelta(minutes=5), last_failed_at=NOW, next_attempt_at=NOW)
    values.update(overrides)
    return DlqEntry(**values)


def test_encoding_has_exactly_the_contract_fields():
    data = json.loads(entry().encode())
    assert data == {
        "idempotency_key": "7:123456",
        "event": EVENT,
        "error": "HTTP 503: down",
        "attempts": 2,
        "first_failed_at": "2026-03-01T11:55:00.000+00:00",
        "last_failed_at": "2026-03-01T12:00:00.000+00:00",
        "next_attempt_at": "2026-03-01T12:00:00.000+00:00",
        "source": DLQ_SOURCE,
    }


def test_decode_inverts_encode():
    original = entry()
    assert DlqEntry.decode(original.encode()) == original
    assert DlqEntry.decode(original.encode().decode()) == original


def test_naive_timestamps_are_read_as_utc():
    data = json.loads(entry().encode())
    data["next_attempt_at"] = "2026-03-01T12:30:00"
    assert DlqEntry.decode(json.dumps(data)).next_attempt_at == NOW + timedelta(minutes=30)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("idempotency_key"), "idempotency_key"),
    (lambda d: d.update(idempotency_key=""), "idempotency_key"),
    (lambda d: d.pop("event"), "no event"),
    (lambda d: d.update(error=None), "error"),
    (lambda d: d.update(attempts=-1), "attempts"),
    (lambda d: d.update(attempts="2"), "attempts"),
    (lambda d: d.update(attempts=True), "attempts"),
    (lambda d: d.update(next_attempt_at="tomorrow"), "next_attempt_at"),
    (lambda d: d.pop("first_failed_at"), "first_failed_at"),
])
def test_invalid_entries_are_refused_with_the_field_named(mutate, message):
    data = json.loads(entry().encode())
    mutate(data)
    with pytest.raises(DlqEntryError, match=message):
        DlqEntry.decode(json.dumps(data))


@pytest.mark.parametrize("raw", [None, b"", b"{nope", b"[1, 2]", b"\xff\xfe"])
def test_garbage_is_refused(raw):
    with pytest.raises(DlqEntryError):
        DlqEntry.decode(raw)


def test_due_when_next_attempt_is_not_in_the_future():
    assert entry(next_attempt_at=NOW).is_due(NOW)
    assert not entry(next_attempt_at=NOW + timedelta(seconds=1)).is_due(NOW)


def test_next_attempt_doubles_per_round():
    assert [next_attempt_at(NOW, n, 60) - NOW for n in (1, 2, 3)] == [
        timedelta(seconds=60), timedelta(seconds=120), timedelta(seconds=240)]
    assert next_attempt_at(NOW, 3, 0) == NOW


def test_failed_again_counts_the_round_and_reschedules():
    later = NOW + timedelta(minutes=10)
    again = entry().failed_again("HTTP 500: boom", later, base_backoff_s=60)
    assert again.attempts == 3
    assert again.error == "HTTP 500: boom"
    assert again.first_failed_at == entry().first_failed_at
    assert again.last_failed_at == later
    assert again.next_attempt_at == later + timedelta(seconds=240)
    assert again.event == EVENT


def test_sink_failures_become_first_round_entries():
    failures = [FailedItem(DeliveryItem("1:10", {"id": 1}), "HTTP 503: down", 3, True),
                FailedItem(DeliveryItem("2:20", {"id": 2}), "HTTP 422: bad", 1, False)]
    first, second = entries_from_failures(failures, NOW)
    assert (first.idempotency_key, first.event, first.attempts) == ("1:10", {"id": 1}, 1)
    assert first.first_failed_at == first.last_failed_at == NOW
    # Due at once: the sink already retried inside its batch.
    assert first.next_attempt_at == NOW
    assert first.error == "HTTP 503: down (retryable, 3 HTTP attempts)"
    assert second.error == "HTTP 422: bad (non-retryable, 1 HTTP attempt)"


def test_audit_lines_are_single_readable_lines(tmp_path):
    line = audit_line("dlq-topic", entry(error="first line\nsecond   line"))
    assert "\n" not in line
    assert "topic=dlq-topic" in line and "key=7:123456" in line and "attempts=2" in line
    assert line.endswith("error=first line second line")
    path = tmp_path / "nested" / "audit.log"
    append_audit(path, [line, line])
    append_audit(path, [line])
    assert path.read_text().splitlines() == [line] * 3


def test_audit_log_path_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("CDC_DLQ_AUDIT_LOG", str(tmp_path / "x.log"))
    assert default_audit_log() == tmp_path / "x.log"
    monkeypatch.setenv("CDC_DLQ_AUDIT_LOG", "")
    assert default_audit_log() is None
    monkeypatch.delenv("CDC_DLQ_AUDIT_LOG")
    monkeypatch.setenv("CDC_STATE_DIR", str(tmp_path / "state"))
    assert default_audit_log() == tmp_path / "state" / "logs" / "restapi_dlq.log"
    monkeypatch.delenv("CDC_STATE_DIR")
    assert default_audit_log() is None


class _FakeProducer:
    """Acknowledges or fails every message at flush time, as librdkafka's callbacks do."""

    def __init__(self, fail: bool):
        self.fail = fail
        self.queued: list[tuple] = []

    def produce(self, topic, key, value, on_delivery):
        self.queued.append((topic, key, value, on_delivery))

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        for topic, key, value, on_delivery in self.queued:
            msg = type("Msg", (), {"topic": lambda self: topic, "partition": lambda self: 0})()
            on_delivery("broker down" if self.fail else None, msg)
        self.queued.clear()
        return 0


def test_writer_audits_acknowledged_entries_but_not_unchanged_copies(tmp_path):
    from cdc_platform.delivery.dlq import DlqWriter

    producer = _FakeProducer(fail=False)
    writer = DlqWriter("unused:9092", audit_log=tmp_path / "audit.log", producer=producer)
    writer.send("dlq", entry())
    writer.send("dlq", entry(idempotency_key="copy"), raw=entry(idempotency_key="copy").encode())
    assert [q[1] for q in producer.queued] == [b"7:123456", b"copy"]
    assert writer.flush() == 2
    assert [line.split()[2] for line in (tmp_path / "audit.log").read_text().splitlines()] == ["key=7:123456"]


def test_writer_flush_fails_loudly_when_kafka_does_not_acknowledge(tmp_path):
    from cdc_platform.delivery.dlq import DlqError, DlqWriter

    writer = DlqWriter("unused:9092", audit_log=tmp_path / "audit.log", producer=_FakeProducer(fail=True))
    writer.send("dlq", entry())
    with pytest.raises(DlqError, match="did not acknowledge 1 of 1"):
        writer.flush()
    assert not (tmp_path / "audit.log").exists()
