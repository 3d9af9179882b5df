"""One fan-out task: every record goes to its topic, every change to every live sink, and a sink
that fails or outlives its budget is reported, never raised. Kafka and the sinks are stand-ins."""
from __future__ import annotations

import json
import sys
import threading
import time
import types

import pytest

from cdc_stream import fanout
from cdc_stream.config import SinkBudget, SinkSettings
from cdc_stream.core import CoreTopics, QuietTrigger

TOPICS = CoreTopics(events="src.events", content="src.content", event_changes="log.events",
                    content_changes="log.content", quarantine="quarantine", pending="pending")
SETTINGS = SinkSettings(bootstrap="unused:9092", cassandra_host="unused", cassandra_port=9042)


class FakeMessage:
    def __init__(self, topic, partition, offset):
        self._t, self._p, self._o = topic, partition, offset

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o


class FakeProducer:
    """Acknowledges on flush, at offsets from 100 on per topic; partition = key's parity."""

    def __init__(self, fail: bool = False):
        self.sent, self.pending, self.fail = [], [], fail
        self.next_offset: dict = {}

    def produce(self, topic, value, key, on_delivery):
        self.sent.append((topic, key, value))
        self.pending.append((topic, int(key) % 2 if key.isdigit() else 0, on_delivery))

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        for topic, partition, callback in self.pending:
            offset = self.next_offset.get((topic, partition), 100)
            self.next_offset[(topic, partition)] = offset + 1
            callback("broker down" if self.fail else None, FakeMessage(topic, partition, offset))
        self.pending = []
        return 0


@pytest.fixture
def sinks(monkeypatch):
    """Stand-in sink modules: each records what it was given, and fails or stalls when told."""
    calls: dict[str, list] = {}
    behaviour: dict[str, str] = {}
    release = threading.Event()
    for name in fanout.SINK_MODULES:
        module = types.ModuleType(f"stub_sink_{name}")

        def write_changes(changes, contents, settings, _name=name):
            calls.setdefault(_name, []).append((list(changes), list(contents)))
            if behaviour.get(_name) == "raise":
                raise ConnectionError(f"{_name} refused the connection")
            if behaviour.get(_name) == "stall":
                release.wait(10)
            return types.SimpleNamespace(applied=len(changes))

        module.write_changes = write_changes
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(fanout.SINK_MODULES, name, module.__name__)
    yield calls, behaviour
    release.set()


@pytest.fixture
def producer(monkeypatch):
    fake = FakeProducer()
    monkeypatch.setattr(fanout, "_producer", lambda kafka: fake)
    return fake


def change(row_id: int, position: int) -> str:
    return json.dumps({"id": row_id, "op": "c", "position": position})


def rows():
    return [
        (TOPICS.event_changes, "1", change(1, 500), None, 500),
        (TOPICS.event_changes, "2", change(2, 700), None, 700),
        (TOPICS.content_changes, "c1", json.dumps({"id": "c1", "op": "c", "position": None}), None, None),
        (TOPICS.quarantine, "9", json.dumps({"reason": "negative_duration"}), "negative_duration", None),
        (TOPICS.pending, "src.events/0/4", '{"waiting": 1}', None, None),
        (TOPICS.content, "src.content/0/3", '{"passed": 1}', None, None),
    ]


def plan(sinks=("cassandra", "redis", "rest"), budget=SinkBudget()):
    return fanout.FanoutPlan(TOPICS, SETTINGS, sinks, budget)


def test_every_record_reaches_its_topic_and_every_change_every_live_sink(sinks, producer):
    calls, _ = sinks
    report, parked, passed = fanout.fan_out_rows(rows(), plan())
    assert [t for t, _, _ in producer.sent] == [TOPICS.event_changes] * 2 + [TOPICS.content_changes, TOPICS.quarantine,
                                                                             TOPICS.pending]
    assert parked == ['{"waiting": 1}'] and passed == ['{"passed": 1}'], "the content source record is not output"
    changes, contents = calls["cassandra"][0]
    assert [c["id"] for c in changes] == [1, 2] and [c["id"] for c in contents] == ["c1"]
    assert calls["redis"][0][1] == [] and calls["rest"][0][1] == [], "only Cassandra keeps the content table"
    assert report["counts"] == {TOPICS.event_changes: 2, TOPICS.content_changes: 1, TOPICS.quarantine: 1,
                                TOPICS.pending: 1}
    assert report["quarantined"] == {"negative_duration": 1} and report["max_position"] == 700
    assert report["first_offsets"][TOPICS.event_changes] == {0: 100, 1: 100}
    assert all(outcome["ok"] for outcome in report["sinks"].values())


def test_a_sink_that_raises_is_reported_and_the_others_are_written(sinks, producer):
    calls, behaviour = sinks
    behaviour["redis"] = "raise"
    report, _, _ = fanout.fan_out_rows(rows(), plan())
    assert report["sinks"]["redis"]["ok"] is False
    assert "ConnectionError: redis refused the connection" in report["sinks"]["redis"]["error"]
    assert report["sinks"]["cassandra"]["ok"] and report["sinks"]["rest"]["ok"]
    assert len(calls["cassandra"]) == 1 and len(calls["rest"]) == 1


def test_a_sink_past_its_budget_is_reported_behind_while_the_task_finishes(sinks, producer):
    _, behaviour = sinks
    behaviour["rest"] = "stall"
    started = time.monotonic()
    report, _, _ = fanout.fan_out_rows(rows(), plan(budget=SinkBudget(base_s=0.3, per_change_s=0.0)))
    assert time.monotonic() - started < 5
    assert report["sinks"]["rest"]["over_budget"] and not report["sinks"]["rest"]["ok"]
    assert "budget of 0.3s" in report["sinks"]["rest"]["error"]
    assert report["sinks"]["cassandra"]["ok"]


def test_a_sink_that_is_behind_is_not_written(sinks, producer):
    calls, _ = sinks
    report, _, _ = fanout.fan_out_rows(rows(), plan(sinks=("cassandra", "rest")))
    assert "redis" not in calls and set(report["sinks"]) == {"cassandra", "rest"}


def test_records_kafka_did_not_acknowledge_fail_the_task(sinks, monkeypatch):
    monkeypatch.setattr(fanout, "_producer", lambda kafka: FakeProducer(fail=True))
    with pytest.raises(RuntimeError, match="did not acknowledge"):
        fanout.fan_out_rows(rows(), plan())


def test_reports_of_several_tasks_merge_into_the_batch_s_result(sinks, producer):
    first, _, _ = fanout.fan_out_rows(rows()[:2], plan())
    first["task_steps"] = {"read": 0.5, "cpu": 0.25}
    second = json.loads(json.dumps({**first, "first_offsets": {TOPICS.event_changes: {"0": 90, "2": 7}},
                                    "task_steps": {"read": 0.125, "cpu": 0.5},
                                    "sinks": {**first["sinks"], "rest": {**first["sinks"]["rest"], "ok": False,
                                                                         "error": "HTTP 503"}}}))
    result = fanout.FanoutResult()
    result.add_report(first)
    result.add_report(second)
    assert result.counts == {TOPICS.event_changes: 4}
    # The slowest task's wall clock, and the CPU of all tasks together.
    assert result.task_steps == {"read": 0.5, "cpu": 0.75}
    assert result.first_offsets == {TOPICS.event_changes: {0: 90, 1: 100, 2: 7}}
    assert result.failed_sinks() == {"rest": "HTTP 503"}


def test_the_quiet_trigger_holds_only_after_a_small_batch_and_a_stop_ends_the_hold():
    stopping = threading.Event()
    quiet = QuietTrigger(0.4, small_batch_changes=100, stopping=stopping)
    assert quiet.hold(time.monotonic(), changes=100) == 0.0
    started = time.monotonic()
    held = quiet.hold(started, changes=3)
    assert 0.3 < held <= 0.4 and time.monotonic() - started >= 0.35
    stopping.set()
    started = time.monotonic()
    quiet.hold(started, changes=3)
    assert time.monotonic() - started < 0.2


def test_a_sink_budget_grows_with_the_changes_it_is_given():
    budget = SinkBudget(base_s=2.0, per_change_s=0.001)
    assert budget.seconds(0) == 2.0 and budget.seconds(3000) == pytest.approx(5.0)
    with pytest.raises(ValueError):
        SinkBudget(base_s=0)
