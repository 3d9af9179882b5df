"""Events that arrived before their content row wait here instead of being quarantined.

An event can be read before the content it references: a backlog, a large transaction, the two
topics read unevenly. The core query parks such an event (its original Kafka record) in a
compacted topic (written by the core query's Kafka job) and keeps an index on the driver; each micro-batch releases the events whose
content is now in the catalogue, and those that waited longer than ``max_wait_s``, which are
then quarantined as unknown_content. A resolved event gets a tombstone, so the compacted topic
holds exactly the events still waiting: that is what a restarted job reloads.

Parking and release are at-least-once (a re-run batch parks or releases again); the sinks are
idempotent by source position, so a released event applied twice changes nothing.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from cdc_platform import semantics
from cdc_platform.kafka_clients import KafkaSettings, client_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WaitingEvent:
    """One parked source record; ``timestamp_ms`` is its Kafka (capture) timestamp."""
    key: str | None
    value: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    pending_since_ms: int
    content_id: str | None  # None when its record names none: only its wait expiring releases it

    @property
    def record_id(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def source_record(self, expired: bool) -> tuple:
        """The record as a schemas.SOURCE_RECORD row."""
        ts = None if self.timestamp_ms is None else datetime.fromtimestamp(self.timestamp_ms / 1000, timezone.utc)
        return (self.key, self.value, self.topic, self.partition, self.offset, ts, self.pending_since_ms, expired)

    @classmethod
    def from_json(cls, text: str | bytes, parked_at_ms: int) -> "WaitingEvent":
        """A record of the waiting room topic (change_log.event_records); one without
        pending_since_ms started waiting when it was parked."""
        fields = json.loads(text)
        since = fields.get("pending_since_ms")
        return cls(key=fields.get("key"), value=fields["value"], topic=fields["topic"],
                   partition=fields["partition"], offset=fields["offset"], timestamp_ms=fields.get("timestamp_ms"),
                   pending_since_ms=parked_at_ms if since is None else since, content_id=fields.get("content_id"))


class WaitingRoom:
    def __init__(self, kafka: KafkaSettings, topic: str, max_wait_s: float):
        """``kafka``: the connection's confluent-kafka client config (or its bootstrap servers)."""
        self.kafka = kafka
        self.topic = topic
        self.max_wait_ms = int(max_wait_s * 1000)
        self._events: dict[str, WaitingEvent] = {}
        self._producer = None
        self._consumer = None

    def __len__(self) -> int:
        return len(self._events)

    def oldest_since_ms(self) -> int | None:
        return min((e.pending_since_ms for e in self._events.values()), default=None)

    def load(self, timeout_s: float = 60.0) -> None:
        """Read the whole topic: the latest record per key, tombstones removing theirs."""
        for message in self._read({}, timeout_s):
            record_id = message.key().decode()
            if message.value() is None:
                self._events.pop(record_id, None)
            else:
                self._events[record_id] = WaitingEvent.from_json(message.value(), message.timestamp()[1])
        log.info("waiting room: %d events waiting for their content (%s)", len(self), self.topic)

    def due(self, knows_content, now_ms: int) -> list[WaitingEvent]:
        """The events to process again: their content is known now, or they waited long enough."""
        return [e for e in self._events.values() if knows_content(e.content_id) or self.is_expired(e, now_ms)]

    def is_expired(self, event: WaitingEvent, now_ms: int) -> bool:
        return now_ms - event.pending_since_ms > self.max_wait_ms

    def park(self, parked: Iterable[str], now_ms: int) -> None:
        """Index events a Kafka job has parked (waiting room topic values)."""
        self._events.update((e.record_id, e) for e in (WaitingEvent.from_json(text, now_ms) for text in parked))

    def settle(self, released: Iterable[WaitingEvent], parked: Iterable[str], now_ms: int) -> int:
        """Record released events whose Kafka job parked ``parked`` again: the others are resolved
        and get a tombstone (flushed before the index changes). Returns how many were resolved."""
        parked_events = {e.record_id: e for e in (WaitingEvent.from_json(text, now_ms) for text in parked)}
        resolved = [e.record_id for e in released if e.record_id not in parked_events]
        if resolved:
            producer = self._get_producer()
            for record_id in resolved:
                producer.produce(self.topic, key=record_id, value=None)
            remaining = producer.flush(60)
            if remaining:
                raise RuntimeError(f"waiting room: {remaining} tombstones not acknowledged by Kafka ({self.topic})")
        self._events.update(parked_events)
        for record_id in resolved:
            self._events.pop(record_id, None)
        return len(resolved)

    def end_offsets(self) -> dict[int, int]:
        """Where the topic ends now: ``parked_since`` reads what was written after."""
        from confluent_kafka import TopicPartition

        consumer = self._get_consumer()
        partitions = consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[1] for p in partitions}

    def parked_since(self, mark: dict[int, int], timeout_s: float = 30.0) -> list[str]:
        """The values written to the topic after ``mark`` (by this job only): the events a batch parked."""
        return [message.value() for message in self._read(mark, timeout_s) if message.value() is not None]

    def _read(self, starts: dict[int, int], timeout_s: float):
        """The topic's messages from ``starts`` (per partition; the beginning where absent) to its end now."""
        from confluent_kafka import TopicPartition

        ends = {p: end for p, end in self.end_offsets().items() if end > starts.get(p, 0)}
        if not ends:
            return
        consumer = self._get_consumer()
        consumer.assign([TopicPartition(self.topic, p, starts.get(p, 0)) for p in ends])
        try:
            while ends:
                message = consumer.poll(timeout_s)
                if message is None:
                    raise RuntimeError(f"waiting room topic {self.topic}: no message within {timeout_s}s "
                                       f"while {len(ends)} partitions were not read to their end")
                if message.error():
                    raise RuntimeError(f"waiting room topic {self.topic}: {message.error()}")
                yield message
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        finally:
            consumer.unassign()

    def _get_consumer(self):
        if self._consumer is None:
            from confluent_kafka import Consumer

            self._consumer = Consumer(client_config(self.kafka, {"group.id": "cdc-stream-waiting-room",
                                                                 "enable.auto.commit": False, "log_level": 0}))
        return self._consumer

    def _get_producer(self):
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer(client_config(self.kafka, {"enable.idempotence": True,
                                                                 "message.max.bytes": semantics.MAX_MESSAGE_BYTES,
                                                                 "linger.ms": 5, "log_level": 0}))
        return self._producer
