"""The REST fan-out sink: each micro-batch of changes becomes batched, idempotent POSTs.

Meant to run as its own streaming query with its own checkpoint, so a slow or dead
service delays only this sink. What cannot be delivered goes to the durable DLQ and
the batch completes. Only a DLQ write that Kafka does not acknowledge fails the batch,
since those changes would otherwise be lost; Spark then re-runs it, and the
idempotency keys make the re-run harmless at the receiver.
"""
from __future__ import annotations

import base64
import decimal
import functools
import hashlib
import logging
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Sequence

import requests
from pyspark.sql import DataFrame, Row
from pyspark.sql import types as T

from cdc_platform import names, semantics
from cdc_platform.delivery import dlq
from cdc_platform.delivery.rest_contract import MAX_BATCH_ITEMS
from cdc_platform.delivery.rest_client import (
    CircuitBreaker,
    DeliveryItem,
    RetryPolicy,
    deliver,
    make_session,
)
from cdc_platform.kafka_clients import KafkaSettings, bootstrap_of, client_config
from cdc_stream import change_log, schemas

log = logging.getLogger(__name__)

# As large as the service takes: one request and one fsync there per BATCH_SIZE changes.
BATCH_SIZE = MAX_BATCH_ITEMS
# ... and no larger than one Kafka message in bytes, so a few multi-megabyte rows make a request
# of their own rather than one of gigabytes.
BATCH_BYTES = semantics.MAX_MESSAGE_BYTES
HTTP_TIMEOUT_S = 5.0
# A few quick retries only: the DLQ reprocess job retries later with a far longer backoff.
SINK_POLICY = RetryPolicy(max_attempts=3, base_backoff_s=0.5, max_backoff_s=4.0)

# Normalized changes carry timestamps as epoch micros; the REST events carry them as ISO-8601.
TIMESTAMP_COLUMNS = tuple(f.name for f in schemas.CHANGE.fields if isinstance(f.dataType, T.TimestampType))
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class UnkeyedChange(ValueError):
    """A change without the id or position its idempotency key is made of."""


@dataclass(frozen=True)
class RestSinkStats:
    rows: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    parked: int = 0  # changes without an idempotency key, parked at once

    def __add__(self, other: "RestSinkStats") -> "RestSinkStats":
        return RestSinkStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def micros_to_iso(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=micros)).isoformat()


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: timestamps become ISO-8601 UTC strings."""
    if isinstance(value, Row):
        return {k: json_safe(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return aware.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # a float could lose digits
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode()
    return value


def build_item(record: dict[str, Any], timestamp_columns: Iterable[str] = ()) -> DeliveryItem:
    """One change as a delivery item. ``timestamp_columns`` hold epoch microseconds
    (how write_batch ships timestamps, independent of any time zone setting)."""
    as_micros = set(timestamp_columns)
    event = {
        name: micros_to_iso(value) if name in as_micros and value is not None else json_safe(value)
        for name, value in record.items()
    }
    row_id, position = record.get("id"), record.get("position")
    if row_id is None or position is None:
        raise UnkeyedChange(f"change without id or position (id={row_id!r}, position={position!r})")
    return DeliveryItem(semantics.idempotency_key(row_id, position), event)


def _parked_entry(record: dict[str, Any], error: str) -> dlq.DlqEntry:
    """A parked entry for a change that cannot become a delivery item, keyed by its idempotency
    key when it has one; its timestamps stay the epoch micros it came with."""
    event = json_safe(record)
    if record.get("id") is not None and record.get("position") is not None:
        key = semantics.idempotency_key(record["id"], record["position"])
    else:
        key = "unkeyed:" + hashlib.sha256(semantics.canonical_json(event).encode()).hexdigest()[:16]
    now = datetime.now(timezone.utc)
    return dlq.DlqEntry(idempotency_key=key, event=event, error=error, attempts=1,
                        first_failed_at=now, last_failed_at=now, next_attempt_at=now)


# One HTTP session and one DLQ producer per executor process, reused by every task it runs.
_SESSIONS: dict[str, requests.Session] = {}
_WRITERS: dict[tuple, dlq.DlqWriter] = {}
_ENSURED_TOPICS: set[tuple[str, str, str]] = set()


def _session(api_url: str) -> requests.Session:
    if api_url not in _SESSIONS:
        _SESSIONS[api_url] = make_session()
    return _SESSIONS[api_url]


def _writer(kafka: KafkaSettings) -> dlq.DlqWriter:
    # Keyed by the whole config: its values are plain (they came as JSON).
    key = tuple(sorted(client_config(kafka).items()))
    if key not in _WRITERS:
        _WRITERS[key] = dlq.DlqWriter(kafka)
    return _WRITERS[key]


def _weight(change: dict) -> int:
    """About a change's bytes on the wire: its payload, plus the other fields' share."""
    payload = change.get("raw_payload")
    return 400 + (len(payload) if isinstance(payload, str) else 0)


class _Delivery:
    """Delivers decoded changes in batches of BATCH_SIZE (and BATCH_BYTES), sending what cannot be
    delivered to the DLQ and what cannot be keyed or built to the parked topic."""

    def __init__(self, *, api_url: str, api_token: str, kafka: KafkaSettings, dlq_topic: str, parked_topic: str,
                 timestamp_columns: tuple[str, ...]):
        self.api_url, self.api_token = api_url, api_token
        self.dlq_topic, self.parked_topic = dlq_topic, parked_topic
        self.timestamp_columns = timestamp_columns
        self.session, self.writer, self.breaker = _session(api_url), _writer(kafka), CircuitBreaker()
        self.counts = {"rows": 0, "delivered": 0, "dead_lettered": 0, "parked": 0}
        self.chunk: list[DeliveryItem] = []
        self.chunk_bytes = 0

    def park(self, record: dict, error: str) -> None:
        self.writer.send(self.parked_topic, _parked_entry(record, error))
        self.counts["parked"] += 1

    def add(self, record: dict, weight: int) -> None:
        self.counts["rows"] += 1
        try:
            self.chunk.append(build_item(record, self.timestamp_columns))
        except UnkeyedChange as exc:
            self.park(record, f"{exc}: no idempotency key, cannot be delivered")
            return
        except (ValueError, OverflowError, TypeError) as exc:
            # The stream quarantines such values before they get here; one that slipped through
            # (written by an older version) is parked with its reason instead of halting the sink.
            self.park(record, f"cannot be built into an event: {exc!r}")
            return
        self.chunk_bytes += weight
        if len(self.chunk) >= BATCH_SIZE or self.chunk_bytes >= BATCH_BYTES:
            self.send()

    def send(self) -> None:
        items, self.chunk, self.chunk_bytes = self.chunk, [], 0
        if not items:
            return
        result = deliver(self.session, self.api_url, self.api_token, items, batch_size=BATCH_SIZE,
                         timeout=HTTP_TIMEOUT_S, policy=SINK_POLICY, breaker=self.breaker)
        for entry in dlq.entries_from_failures(result.failed):
            self.writer.send(self.dlq_topic, entry)
        self.counts["delivered"] += len(result.delivered)
        self.counts["dead_lettered"] += len(result.failed)

    def finish(self) -> RestSinkStats:
        self.send()
        self.writer.flush()
        return RestSinkStats(**self.counts)


def deliver_partition(records: Iterator, *, api_url: str, api_token: str, kafka: KafkaSettings, dlq_topic: str,
                      parked_topic: str, timestamp_columns: tuple[str, ...]) -> Iterator[RestSinkStats]:
    """Deliver one partition of normalized records (topic, value); yields the partition's counts.
    ``kafka``: the connection's confluent-kafka client config."""
    delivery = _Delivery(api_url=api_url, api_token=api_token, kafka=kafka, dlq_topic=dlq_topic,
                         parked_topic=parked_topic, timestamp_columns=timestamp_columns)
    for _topic, value in records:
        try:
            record = change_log.decode(value)
        except ValueError as exc:
            delivery.counts["rows"] += 1
            delivery.park({"undecodable_value": value.decode(errors="replace") if isinstance(value, bytes) else value},
                          f"not a normalized change ({exc}), cannot be delivered")
            continue
        delivery.add(record, len(value or b""))
    yield delivery.finish()


def _checked(settings, dlq_topic: str, parked_topic: str) -> tuple[str, str, KafkaSettings]:
    api_url, api_token, kafka = settings.api_url, settings.api_token, settings.kafka
    if not api_url or not api_token or not kafka:
        raise ValueError("the REST sink needs settings.api_url, settings.api_token and settings.kafka")
    topics = (bootstrap_of(kafka), dlq_topic, parked_topic)
    if topics not in _ENSURED_TOPICS:
        dlq.ensure_dlq_topics(kafka, dlq_topic, parked_topic)
        _ENSURED_TOPICS.add(topics)
    return api_url, api_token, kafka


def write_changes(changes: Sequence[dict], contents: Sequence[dict], settings) -> RestSinkStats:
    """Deliver decoded event changes (change_log.decode); the service takes no content changes."""
    if not changes:
        return RestSinkStats()
    api_url, api_token, kafka = _checked(settings, settings.dlq_topic, settings.parked_topic)
    delivery = _Delivery(api_url=api_url, api_token=api_token, kafka=kafka, dlq_topic=settings.dlq_topic,
                         parked_topic=settings.parked_topic, timestamp_columns=TIMESTAMP_COLUMNS)
    for change in changes:
        delivery.add(change, _weight(change))
    return delivery.finish()


def write_batch(records: DataFrame, batch_id: int, settings, *, dlq_topic: str = names.DLQ_TOPIC,
                parked_topic: str = names.PARKED_TOPIC) -> RestSinkStats:
    """foreachBatch body of the REST sink: normalized records (topic, value). Reads
    ``settings.api_url``, ``settings.api_token`` and ``settings.kafka`` (the Kafka connection's
    client settings, for the DLQ)."""
    api_url, api_token, kafka = _checked(settings, dlq_topic, parked_topic)
    run = functools.partial(deliver_partition, api_url=api_url, api_token=api_token, kafka=kafka,
                            dlq_topic=dlq_topic, parked_topic=parked_topic, timestamp_columns=TIMESTAMP_COLUMNS)
    stats = sum(records.select("topic", "value").rdd.mapPartitions(run).collect(), RestSinkStats())
    log.info("REST sink batch %s: %s", batch_id, stats)
    return stats
