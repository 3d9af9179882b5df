"""Sinks that fell behind: the driver's ledger (``cdc_platform.sink_ledger``) and the catch-up
queries that replay the change log to them.

The core query's batches ask ``SinkLedger.written_by_batches`` which sinks to write, and report
each sink's outcome to ``SinkLedger.settle``. The supervisor (``job.run``) calls
``CatchUps.poll`` every second: it starts a catch-up query for every sink the ledger has behind,
hands the sink back to the batches once its query has read the log to its end, and stops the
query once it has passed the offset the batches took over from.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from cdc_platform import names
from cdc_platform import sink_ledger as L
from cdc_platform.kafka_clients import client_config
from cdc_stream.fanout import CONTENT_SINKS, FanoutResult

log = logging.getLogger(__name__)


def log_topics(sink: str, event_changes_topic: str, content_changes_topic: str) -> list[str]:
    """The change-log topics a sink's catch-up reads."""
    return [event_changes_topic, content_changes_topic] if sink in CONTENT_SINKS else [event_changes_topic]


class SinkLedger:
    """The ledger as the driver keeps it: read once at start, every change written through."""

    def __init__(self, checkpoint_root: str, sinks: tuple[str, ...], kafka: dict, topics: dict[str, list[str]]):
        if not L.is_local(checkpoint_root):
            raise SystemExit(f"the sink ledger lives next to the checkpoints and needs a local or mounted "
                             f"file system; --checkpoint-root {checkpoint_root} is not one")
        self.root = checkpoint_root
        self.sinks = sinks
        self.kafka = kafka
        self.topics = topics
        self._states = L.read_all(checkpoint_root, sinks)
        self._lock = threading.Lock()
        self._consumer = None

    def state(self, sink: str) -> L.SinkState:
        with self._lock:
            return self._states[sink]

    def written_by_batches(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(s for s in self.sinks if self._states[s].written_by_batches)

    def _put(self, state: L.SinkState) -> None:
        with self._lock:
            self._states[state.sink] = L.write_state(self.root, state)
        log.warning("sink %s is %s%s", state.sink, state.state, f": {state.cause}" if state.cause else "")

    def fall_behind(self, sink: str, start: L.Offsets, cause: str) -> None:
        current = self.state(sink)
        if current.state == L.LIVE:
            self._put(L.SinkState(sink, L.BEHIND, start=start, cause=cause, since=time.time()))
        elif current.state != L.BEHIND:
            # Its catch-up query is still running, and is nowhere past what the batches wrote.
            self._put(dataclasses.replace(current, state=L.BEHIND, live_from={}, cause=cause))

    def settle(self, result: FanoutResult, written: tuple[str, ...], batch_id: int) -> None:
        """After a batch's fan-out: a sink that failed falls behind from where this batch's
        records start in the log; a sink handed back to the batches has joined from there."""
        for sink in written:
            outcome = result.sinks.get(sink)
            current = self.state(sink)
            if outcome is not None and not outcome.ok:
                cause = f"batch {batch_id}: {outcome.error}"
                start = self.log_position(sink, result.first_offsets) if current.state == L.LIVE else {}
                self.fall_behind(sink, start, cause)
            elif current.state == L.HANDOFF:
                self._put(dataclasses.replace(current, state=L.JOINED,
                                              live_from=self.log_position(sink, result.first_offsets),
                                              cause=f"written by the batches again from batch {batch_id}"))

    def hand_off(self, sink: str) -> None:
        self._put(dataclasses.replace(self.state(sink), state=L.HANDOFF, cause="caught up with the change log"))

    def rejoined(self, sink: str) -> None:
        self._put(L.SinkState(sink, L.LIVE))

    def log_position(self, sink: str, first_offsets: L.Offsets) -> L.Offsets:
        """Per partition of the sink's log topics: the first offset this batch wrote there, or
        where the partition ends now (this batch wrote nothing there)."""
        ends = self.log_end(sink)
        return {topic: {p: first_offsets.get(topic, {}).get(p, end) for p, end in partitions.items()}
                for topic, partitions in ends.items()}

    def log_end(self, sink: str) -> L.Offsets:
        from confluent_kafka import Consumer, TopicPartition

        if self._consumer is None:
            self._consumer = Consumer(client_config(self.kafka, {"group.id": "cdc-stream-ledger",
                                                                 "enable.auto.commit": False, "log_level": 0}))
        ends: L.Offsets = {}
        for topic in self.topics[sink]:
            partitions = self._consumer.list_topics(topic, timeout=30).topics[topic].partitions
            ends[topic] = {p: self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                           for p in partitions}
        return ends


def starting_offsets_json(start: L.Offsets) -> str:
    """Offsets as Spark's Kafka source takes them in ``startingOffsets``."""
    return json.dumps({topic: {str(p): o for p, o in partitions.items()} for topic, partitions in start.items()})


class CatchUps:
    """The catch-up queries of the sinks that are behind, driven by the supervisor."""

    def __init__(self, ledger: SinkLedger, checkpoint: Callable[[str], str],
                 new_query: Callable[[str, str | None], object],
                 committed: Callable[[Path], tuple | None]):
        """``checkpoint(query)``: its checkpoint path; ``new_query(sink, starting_offsets)``: a
        supervised catch-up query (not started); ``committed(path)``: a checkpoint's last
        committed offsets and their time (health.checks.latest_committed_offsets)."""
        self.ledger = ledger
        self.checkpoint = checkpoint
        self.new_query = new_query
        self.committed = committed
        self.queries: dict[str, object] = {}

    def adopt_leftover_checkpoints(self) -> None:
        """A live sink with a catch-up checkpoint left over (a stream of the five-query layout,
        or one stopped between a catch-up's end and its checkpoint's removal): its checkpoint is
        resumed first, so nothing it had not yet applied is skipped."""
        for sink in self.ledger.sinks:
            path = Path(self.checkpoint(names.sink_query(sink)).removeprefix("file://"))
            if self.ledger.state(sink).state == L.LIVE and (path / "commits").is_dir():
                self.ledger.fall_behind(sink, {}, f"resuming its checkpoint {path}")

    def poll(self, now: float) -> None:
        for sink in self.ledger.sinks:
            state = self.ledger.state(sink)
            query = self.queries.get(sink)
            if not state.catching_up:
                continue
            name = names.sink_query(sink)
            path = Path(self.checkpoint(name).removeprefix("file://"))
            if query is None:
                starting = None if (path / "commits").is_dir() or not state.start else starting_offsets_json(state.start)
                query = self.queries[sink] = self.new_query(sink, starting)
                log.info("sink %s is behind (%s): catching up from %s", sink, state.cause,
                         "its checkpoint" if starting is None else starting)
            query.poll(now)
            if not (query.query is not None and query.query.isActive):
                continue
            committed = self.committed(path)
            if committed is None:
                continue
            position = committed[0]
            if state.state == L.BEHIND and L.passed(position, self.ledger.log_end(sink)):
                self.ledger.hand_off(sink)
            elif state.state == L.JOINED and state.live_from and L.passed(position, state.live_from):
                query.stop(time.monotonic() + 30)
                del self.queries[sink]
                self.ledger.rejoined(sink)
                shutil.rmtree(path, ignore_errors=True)
                log.info("sink %s caught up and is written by the batches again", sink)

    def stop(self, deadline: float) -> None:
        for query in self.queries.values():
            query.stop(deadline)
