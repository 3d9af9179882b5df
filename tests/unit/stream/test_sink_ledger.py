"""The sink ledger and the catch-up supervision: which sinks the core batches write, and how a
sink that failed falls behind, is caught up from the change log and rejoins. No services: the
Kafka end offsets and the catch-up queries are stand-ins."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdc_platform import names
from cdc_platform import sink_ledger as L
from cdc_stream.catchup import CatchUps, SinkLedger, log_topics, starting_offsets_json
from cdc_stream.fanout import FanoutResult, SinkOutcome

EVENTS, CONTENT = "log.events", "log.content"


class FixedEnds(SinkLedger):
    """A ledger whose change log ends where the test says."""

    def __init__(self, root: Path, ends: dict):
        super().__init__(str(root), names.STREAM_SINKS, {"bootstrap.servers": "unused:9092"},
                         {sink: log_topics(sink, EVENTS, CONTENT) for sink in names.STREAM_SINKS})
        self.ends = ends

    def log_end(self, sink: str) -> L.Offsets:
        return {topic: dict(self.ends[topic]) for topic in self.topics[sink]}


def result(first_offsets: dict, failed: dict[str, str] = ()) -> FanoutResult:
    sinks = {sink: SinkOutcome() for sink in names.STREAM_SINKS}
    for sink, error in dict(failed).items():
        sinks[sink] = SinkOutcome(ok=False, error=error)
    return FanoutResult(first_offsets=first_offsets, sinks=sinks)


def test_a_sink_with_no_entry_is_live_and_the_core_batches_write_every_sink(tmp_path):
    ledger = FixedEnds(tmp_path, {EVENTS: {0: 5}, CONTENT: {0: 1}})
    assert ledger.written_by_batches() == names.STREAM_SINKS
    assert L.read_state(tmp_path, "redis") == L.SinkState("redis")


def test_a_failed_sink_falls_behind_from_the_batch_s_first_log_offsets_and_the_others_stay_live(tmp_path):
    ledger = FixedEnds(tmp_path, {EVENTS: {0: 120, 1: 80}, CONTENT: {0: 7}})
    # The batch wrote partition 0 of the events log from offset 100; nothing to partition 1.
    ledger.settle(result({EVENTS: {0: 100}}, failed={"cassandra": "NoHostAvailable"}), names.STREAM_SINKS, 41)
    state = L.read_state(tmp_path, "cassandra")
    assert state.state == L.BEHIND and "batch 41: NoHostAvailable" in state.cause
    # Partitions the batch did not write start where they end now; Cassandra reads the content log too.
    assert state.start == {EVENTS: {0: 100, 1: 80}, CONTENT: {0: 7}}
    assert ledger.written_by_batches() == ("redis", "rest")
    # What the driver keeps and what a restarted driver reads are the same.
    assert FixedEnds(tmp_path, ledger.ends).state("cassandra") == state


def test_a_sink_failing_again_while_it_rejoins_goes_back_behind_without_moving_its_start(tmp_path):
    ledger = FixedEnds(tmp_path, {EVENTS: {0: 50}, CONTENT: {0: 0}})
    ledger.settle(result({EVENTS: {0: 40}}, failed={"redis": "down"}), names.STREAM_SINKS, 1)
    ledger.hand_off("redis")
    assert "redis" in ledger.written_by_batches()
    ledger.settle(result({EVENTS: {0: 60}}, failed={"redis": "down again"}), ledger.written_by_batches(), 2)
    state = ledger.state("redis")
    assert state.state == L.BEHIND and state.start == {EVENTS: {0: 40}} and "down again" in state.cause


def test_a_handed_off_sink_joins_from_the_first_batch_that_writes_it(tmp_path):
    ledger = FixedEnds(tmp_path, {EVENTS: {0: 90, 1: 33}, CONTENT: {0: 0}})
    ledger.settle(result({EVENTS: {0: 10}}, failed={"rest": "timeout"}), names.STREAM_SINKS, 1)
    ledger.hand_off("rest")
    ledger.settle(result({EVENTS: {0: 95}}), ledger.written_by_batches(), 7)
    state = ledger.state("rest")
    assert state.state == L.JOINED and state.live_from == {EVENTS: {0: 95, 1: 33}}


class StubQuery:
    """A supervised catch-up query: started on its first poll, stopped when told."""

    def __init__(self):
        self.query = None
        self.polls = 0
        self.stopped = False

    def poll(self, now: float) -> None:
        self.polls += 1
        self.query = type("Active", (), {"isActive": True})()

    def stop(self, deadline: float) -> None:
        self.stopped = True


def test_catch_up_runs_from_the_ledger_start_hands_off_at_the_log_end_and_ends_past_live_from(tmp_path):
    ends = {EVENTS: {0: 100}, CONTENT: {0: 5}}
    ledger = FixedEnds(tmp_path, ends)
    ledger.settle(result({EVENTS: {0: 80}}, failed={"redis": "down"}), names.STREAM_SINKS, 3)
    started: list[tuple[str, str | None]] = []
    queries: dict[str, StubQuery] = {}
    committed: dict[str, dict] = {}

    def new_query(sink, starting):
        started.append((sink, starting))
        queries[sink] = StubQuery()
        return queries[sink]

    def checkpoint(query: str) -> str:
        return str(tmp_path / query)

    catch_ups = CatchUps(ledger, checkpoint, new_query,
                         lambda path: (committed[path.name], 0.0) if path.name in committed else None)
    catch_ups.poll(0.0)
    assert started == [("redis", starting_offsets_json({EVENTS: {0: 80}}))]
    assert json.loads(started[0][1]) == {EVENTS: {"0": 80}}

    committed[names.sink_query("redis")] = {EVENTS: {0: 90}}  # still short of the log's end
    catch_ups.poll(1.0)
    assert ledger.state("redis").state == L.BEHIND

    committed[names.sink_query("redis")] = {EVENTS: {0: 100}}
    catch_ups.poll(2.0)
    assert ledger.state("redis").state == L.HANDOFF

    ends[EVENTS][0] = 130
    ledger.settle(result({EVENTS: {0: 120}}), ledger.written_by_batches(), 9)
    assert ledger.state("redis").live_from == {EVENTS: {0: 120}}
    (tmp_path / names.sink_query("redis") / "commits").mkdir(parents=True)
    catch_ups.poll(3.0)  # at 100, short of 120: the catch-up goes on
    assert ledger.state("redis").state == L.JOINED and not queries["redis"].stopped

    committed[names.sink_query("redis")] = {EVENTS: {0: 125}}
    catch_ups.poll(4.0)
    assert ledger.state("redis").state == L.LIVE and queries["redis"].stopped
    assert not (tmp_path / names.sink_query("redis")).exists(), "the finished catch-up's checkpoint stays behind"
    assert started == [("redis", starting_offsets_json({EVENTS: {0: 80}}))], "started twice"


def test_a_catch_up_checkpoint_left_over_is_resumed_before_its_sink_is_written_by_the_batches(tmp_path):
    (tmp_path / names.sink_query("cassandra") / "commits").mkdir(parents=True)
    ledger = FixedEnds(tmp_path, {EVENTS: {0: 1}, CONTENT: {0: 1}})
    started = []
    catch_ups = CatchUps(ledger, lambda q: str(tmp_path / q), lambda s, o: started.append((s, o)) or StubQuery(),
                         lambda path: None)
    catch_ups.adopt_leftover_checkpoints()
    assert ledger.written_by_batches() == ("redis", "rest")
    catch_ups.poll(0.0)
    assert started == [("cassandra", None)], "a leftover checkpoint resumes from its own offsets"


def test_query_checkpoint_names_the_core_query_for_a_live_sink_and_the_catch_up_for_one_behind(tmp_path):
    assert L.query_checkpoint(tmp_path, names.sink_query("rest")) == tmp_path / names.STREAM_CORE_QUERY
    L.write_state(tmp_path, L.SinkState("rest", L.BEHIND, start={EVENTS: {0: 3}}))
    assert L.query_checkpoint(tmp_path, names.sink_query("rest")) == tmp_path / names.sink_query("rest")
    assert L.query_checkpoint(tmp_path, names.STREAM_CORE_QUERY) == tmp_path / names.STREAM_CORE_QUERY


@pytest.mark.parametrize("position, target, passed", [
    ({EVENTS: {0: 5, 1: 9}}, {EVENTS: {0: 5, 1: 9}}, True),
    ({EVENTS: {0: 6, 1: 9}}, {EVENTS: {0: 5}}, True),
    ({EVENTS: {0: 4, 1: 9}}, {EVENTS: {0: 5, 1: 1}}, False),
    ({EVENTS: {0: 9}}, {EVENTS: {0: 5}, CONTENT: {0: 1}}, False),
])
def test_passed_needs_every_partition_of_the_target(position, target, passed):
    assert L.passed(position, target) is passed


def test_an_unknown_state_in_the_ledger_is_refused_by_name():
    with pytest.raises(ValueError, match="limbo"):
        L.SinkState.from_json("redis", {"state": "limbo"})


def test_a_remote_checkpoint_root_is_refused_for_the_ledger():
    with pytest.raises(SystemExit, match="s3a://bucket/ckpt"):
        SinkLedger("s3a://bucket/ckpt", names.STREAM_SINKS, {}, {})
