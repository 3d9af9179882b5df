"""A DLQ round against recording Kafka clients: what each message becomes, and the rule both
rounds share, that offsets are committed only after Kafka acknowledged every write."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cdc_platform.delivery import dlq

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def parked(key: str, attempts: int = 5) -> bytes:
    return dlq.DlqEntry(idempotency_key=key, event={"id": key}, error="HTTP 503", attempts=attempts,
                        first_failed_at=NOW, last_failed_at=NOW, next_attempt_at=NOW).encode()


class Record:
    def __init__(self, value: bytes, offset: int, key: bytes | None = None):
        self._value, self._offset, self._key = value, offset, key

    def value(self):
        return self._value

    def key(self):
        return self._key

    def topic(self):
        return "parked"

    def partition(self):
        return 0

    def offset(self):
        return self._offset


class Kafka:
    """The backlog to read, and what the round wrote and committed, in order."""

    def __init__(self, records: list[Record], unacknowledged: int = 0):
        self.records = records
        self.unacknowledged = unacknowledged
        self.log: list[tuple] = []

    def install(self, monkeypatch):
        kafka = self

        class Consumer:
            def commit(self, offsets, asynchronous):
                kafka.log.append(("commit", [(tp.topic, tp.partition, tp.offset) for tp in offsets]))

            def close(self):
                kafka.log.append(("close",))

        class Producer:
            def __init__(self, _config):
                pass

            def produce(self, topic, key, value, on_delivery):
                kafka.log.append(("produce", topic, key.decode(), value))

            def poll(self, _timeout):
                return 0

            def flush(self, _timeout):
                kafka.log.append(("flush",))
                return kafka.unacknowledged

        def read_backlog(_consumer, topic, limit, _deadline):
            kafka.log.append(("read", topic, limit))
            return kafka.records, ({0: kafka.records[-1].offset() + 1} if kafka.records else {})

        monkeypatch.setattr(dlq, "_consumer", lambda *_args: Consumer())
        monkeypatch.setattr(dlq, "Producer", Producer)
        monkeypatch.setattr(dlq, "_read_backlog", read_backlog)
        monkeypatch.setattr(dlq, "ensure_dlq_topics", lambda *_args: kafka.log.append(("ensure",)))
        return self


def replay(keys=None, max_entries=None) -> dlq.ReplayReport:
    return dlq.replay_parked("k:9092", keys, now=NOW, max_entries=max_entries, dlq_topic="dlq",
                             parked_topic="parked", audit_log=None)


def test_a_replay_requeues_the_wanted_keeps_the_rest_and_commits_after_the_writes(monkeypatch):
    kafka = Kafka([Record(parked("a"), 10), Record(b"not json", 11, key=b"x"), Record(parked("b"), 12)])
    kafka.install(monkeypatch)
    report = replay(keys=["a"], max_entries=3)
    assert (report.requeued, report.kept, report.consumed, report.requeued_keys) == (1, 2, 3, ["a"])
    assert kafka.log == [
        ("ensure",), ("read", "parked", 3),
        ("produce", "dlq", "a", parked("a", attempts=0)),
        ("produce", "parked", "x", b"not json"),
        ("produce", "parked", "b", parked("b")),
        ("flush",), ("commit", [("parked", 0, 13)]), ("close",),
    ]


def test_a_round_whose_writes_kafka_did_not_acknowledge_commits_nothing(monkeypatch):
    kafka = Kafka([Record(parked("a"), 0)], unacknowledged=1)
    kafka.install(monkeypatch)
    with pytest.raises(dlq.DlqError, match="did not acknowledge"):
        replay()
    assert [step[0] for step in kafka.log] == ["ensure", "read", "produce", "flush", "close"]


def test_an_empty_backlog_writes_and_commits_nothing(monkeypatch):
    kafka = Kafka([])
    kafka.install(monkeypatch)
    report = dlq.reprocess("k:9092", "http://api.test", "tok", now=NOW, dlq_topic="dlq", parked_topic="parked",
                           audit_log=None)
    assert report == dlq.ReprocessReport()
    assert kafka.log == [("ensure",), ("read", "dlq", float("inf")), ("close",)]


@pytest.mark.parametrize("max_entries", [0, -1])
def test_a_round_limited_below_one_entry_is_refused_before_it_touches_kafka(monkeypatch, max_entries):
    kafka = Kafka([])
    kafka.install(monkeypatch)
    with pytest.raises(ValueError, match="max_entries must be >= 1"):
        replay(max_entries=max_entries)
    with pytest.raises(ValueError, match="max_entries must be >= 1"):
        dlq.reprocess("k:9092", "http://api.test", "tok", max_entries=max_entries)
    assert kafka.log == []


def test_a_reprocess_round_passes_on_what_is_not_due_and_parks_what_it_cannot_read(monkeypatch):
    from datetime import timedelta

    later = dlq.DlqEntry(idempotency_key="later", event={"id": 1}, error="HTTP 503", attempts=1,
                         first_failed_at=NOW, last_failed_at=NOW, next_attempt_at=NOW + timedelta(hours=1)).encode()
    kafka = Kafka([Record(later, 4), Record(b"\xff", 5, key=b"bad")])
    kafka.install(monkeypatch)
    report = dlq.reprocess("k:9092", "http://api.test", "tok", now=NOW, dlq_topic="dlq", parked_topic="parked",
                           audit_log=None)
    assert (report.skipped_not_due, report.parked, report.parked_keys, report.consumed) == (1, 1, ["bad"], 2)
    assert [step[:3] for step in kafka.log] == [
        ("ensure",), ("read", "dlq", float("inf")),
        ("produce", "dlq", "later"), ("produce", "parked", "bad"),
        ("flush",), ("commit", [("dlq", 0, 6)]), ("close",),
    ]
    assert kafka.log[2][3] == later
