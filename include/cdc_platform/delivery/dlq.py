"""The durable dead-letter queue of the REST fan-out: Kafka topics, not a file.

Changes the REST service did not take go to names.DLQ_TOPIC, keyed by idempotency
key. :func:`reprocess` retries the entries that are due, with backoff; after
``max_attempts`` delivery rounds an entry moves to names.PARKED_TOPIC, where it waits
for a human. Every round is at-least-once: offsets are committed only after the
re-produced entries are acknowledged, and the idempotency key makes a repeated
delivery harmless. An optional audit log gets one readable line per entry written.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Collection, Iterable

import requests
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cdc_platform import names, semantics
from cdc_platform.delivery.rest_client import (
    DeliveryItem,
    FailedItem,
    RetryPolicy,
    deliver,
    make_session,
)
from cdc_platform.kafka_clients import KafkaSettings, client_config

log = logging.getLogger(__name__)

DLQ_SOURCE = "rest_sink"

DEFAULT_MAX_ATTEMPTS = semantics.DLQ_MAX_ATTEMPTS
DEFAULT_BACKOFF_S = semantics.DLQ_BACKOFF_S
MAX_BACKOFF_S = 6 * 3600.0

AUDIT_LOG_ENV = "CDC_DLQ_AUDIT_LOG"
AUDIT_LOG_NAME = "restapi_dlq.log"

_KAFKA_TIMEOUT_S = 15.0


class DlqError(RuntimeError):
    """The DLQ could not be read or written; nothing was committed."""


class DlqEntryError(ValueError):
    """A DLQ message that is not a valid entry."""


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _iso(ts: datetime) -> str:
    return _utc(ts).isoformat(timespec="milliseconds")


def _parse_ts(data: dict, name: str) -> datetime:
    value = data.get(name)
    if not isinstance(value, str):
        raise DlqEntryError(f"{name} must be an ISO-8601 string, got {value!r}")
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError as exc:
        raise DlqEntryError(f"{name}: {exc}") from None


def next_attempt_at(now: datetime, attempts: int, base_backoff_s: float) -> datetime:
    """When an entry that has failed ``attempts`` delivery rounds is next due.

    The same doubling rule as the HTTP retries, without jitter: the reprocess
    schedule already spreads the rounds out."""
    schedule = RetryPolicy(base_backoff_s=base_backoff_s, max_backoff_s=max(MAX_BACKOFF_S, base_backoff_s),
                           jitter=0.0)
    return _utc(now) + timedelta(seconds=schedule.ceiling(max(attempts, 1)))


@dataclass(frozen=True)
class DlqEntry:
    idempotency_key: str
    event: Any  # the original normalized change, as JSON
    error: str
    attempts: int  # delivery rounds so far: the sink's is 1, each reprocess round adds 1
    first_failed_at: datetime
    last_failed_at: datetime
    next_attempt_at: datetime
    source: str = DLQ_SOURCE

    def to_dict(self) -> dict[str, Any]:
        return {
            "idempotency_key": self.idempotency_key,
            "event": self.event,
            "error": self.error,
            "attempts": self.attempts,
            "first_failed_at": _iso(self.first_failed_at),
            "last_failed_at": _iso(self.last_failed_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "source": self.source,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | str | None) -> "DlqEntry":
        if raw is None:
            raise DlqEntryError("empty message value")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DlqEntryError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DlqEntryError(f"expected a JSON object, got {type(data).__name__}")
        key = data.get("idempotency_key")
        if not isinstance(key, str) or not key:
            raise DlqEntryError(f"idempotency_key must be a non-empty string, got {key!r}")
        if "event" not in data:
            raise DlqEntryError("no event")
        error = data.get("error")
        if not isinstance(error, str):
            raise DlqEntryError(f"error must be a string, got {error!r}")
        attempts = data.get("attempts")
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
            raise DlqEntryError(f"attempts must be a non-negative integer, got {attempts!r}")
        source = data.get("source", DLQ_SOURCE)
        if not isinstance(source, str):
            raise DlqEntryError(f"source must be a string, got {source!r}")
        return cls(
            idempotency_key=key,
            event=data["event"],
            error=error,
            attempts=attempts,
            first_failed_at=_parse_ts(data, "first_failed_at"),
            last_failed_at=_parse_ts(data, "last_failed_at"),
            next_attempt_at=_parse_ts(data, "next_attempt_at"),
            source=source,
        )

    def is_due(self, now: datetime) -> bool:
        return self.next_attempt_at <= _utc(now)

    def failed_again(self, error: str, now: datetime, base_backoff_s: float) -> "DlqEntry":
        attempts = self.attempts + 1
        return replace(self, error=error, attempts=attempts, last_failed_at=_utc(now),
                       next_attempt_at=next_attempt_at(now, attempts, base_backoff_s))


def describe_failure(failure: FailedItem) -> str:
    kind = "retryable" if failure.retryable else "non-retryable"
    return f"{failure.error} ({kind}, {failure.attempts} HTTP attempt{'s' if failure.attempts != 1 else ''})"


def entries_from_failures(failures: Iterable[FailedItem], now: datetime | None = None) -> list[DlqEntry]:
    """First DLQ entries for items the sink could not deliver (its round counts as attempt 1).

    They are due at once: the sink already retried with backoff inside its batch, and the
    reprocess schedule spaces the next round; backoff grows from the second failure on."""
    now = _utc(now or datetime.now(timezone.utc))
    return [
        DlqEntry(idempotency_key=f.item.idempotency_key, event=f.item.event, error=describe_failure(f),
                 attempts=1, first_failed_at=now, last_failed_at=now, next_attempt_at=now)
        for f in failures
    ]


def default_audit_log() -> Path | None:
    """``$CDC_DLQ_AUDIT_LOG`` (empty disables it), else ``$CDC_STATE_DIR/logs/restapi_dlq.log``
    (the local stack sets it), else none."""
    configured = os.environ.get(AUDIT_LOG_ENV)
    if configured is not None:
        return Path(configured) if configured.strip() else None
    state_dir = os.environ.get("CDC_STATE_DIR")
    return Path(state_dir) / "logs" / AUDIT_LOG_NAME if state_dir else None


def audit_line(topic: str, entry: DlqEntry) -> str:
    error = " ".join(entry.error.split())
    return (f"{_iso(entry.last_failed_at)} topic={topic} key={entry.idempotency_key} attempts={entry.attempts} "
            f"next_attempt_at={_iso(entry.next_attempt_at)} error={error}")


def append_audit(path: Path, lines: list[str]) -> None:
    """Append whole lines with O_APPEND, so writers in several processes do not interleave.
    The audit log is an extra: failing to write it never fails a delivery."""
    if not lines:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            for line in lines:
                os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("could not append to the DLQ audit log %s: %s", path, exc)


_AUTO = object()


class DlqWriter:
    """Produces entries; :meth:`flush` raises unless Kafka acknowledged every one.

    Keyed by idempotency key, so all entries of one change share a partition."""

    def __init__(self, bootstrap: KafkaSettings, audit_log: Path | None | object = _AUTO, producer: Producer | None = None):
        self._producer = producer or Producer(client_config(bootstrap, {
            "message.max.bytes": semantics.MAX_MESSAGE_BYTES,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            "message.timeout.ms": 30_000,
            "client.id": "cdc-rest-dlq",
        }))
        self._audit_log = default_audit_log() if audit_log is _AUTO else audit_log
        self._errors: list[str] = []
        self._audit: list[str] = []
        self._sent = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def send(self, topic: str, entry: DlqEntry, raw: bytes | None = None) -> None:
        """Queue ``entry``, or pass it on unchanged as its original bytes ``raw``
        (an unchanged copy is no new failure, so it gets no audit line)."""
        value = raw if raw is not None else entry.encode()
        while True:
            try:
                self._producer.produce(topic, key=entry.idempotency_key.encode(), value=value,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.5)  # local queue full: let deliveries drain
        self._producer.poll(0)
        if raw is None:
            self._audit.append(audit_line(topic, entry))
        self._sent += 1

    def flush(self, timeout: float = 60.0) -> int:
        """Wait for every queued entry; return how many were written since the last flush."""
        remaining = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        lines, self._audit = self._audit, []
        sent, self._sent = self._sent, 0
        if remaining or errors:
            detail = "; ".join(errors[:5]) or f"{remaining} still unacknowledged after {timeout:.0f}s"
            raise DlqError(f"Kafka did not acknowledge {len(errors) + remaining} of {sent} DLQ entries: {detail}")
        if self._audit_log is not None:
            append_audit(self._audit_log, lines)
        return sent


def ensure_dlq_topics(bootstrap: KafkaSettings, dlq_topic: str = names.DLQ_TOPIC, parked_topic: str = names.PARKED_TOPIC,
                      timeout: float = _KAFKA_TIMEOUT_S) -> list[str]:
    """Create the DLQ and parked topics if missing; return the names created.

    Partitions and retention are provisioning's specs of the real topics (the one place
    topic settings are defined), applied under the given names."""
    from cdc_platform.provisioning import TOPICS, create_topics

    specs = {spec.name: spec for spec in TOPICS}
    wanted = (replace(specs[names.DLQ_TOPIC], name=dlq_topic), replace(specs[names.PARKED_TOPIC], name=parked_topic))
    try:
        created = create_topics(bootstrap, wanted, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - KafkaException and timeouts alike: the DLQ is unusable
        raise DlqError(f"could not create the DLQ topics {dlq_topic}, {parked_topic}: {exc}") from exc
    _wait_for_leaders(AdminClient(client_config(bootstrap)), created,
                      deadline=time.monotonic() + timeout)
    return created


def _wait_for_leaders(admin: AdminClient, topics: list[str], deadline: float) -> None:
    """A new topic takes a moment to elect partition leaders; reading it before that fails."""
    while topics:
        metadata = admin.list_topics(timeout=_KAFKA_TIMEOUT_S).topics
        if all(t in metadata and metadata[t].partitions
               and all(p.leader >= 0 for p in metadata[t].partitions.values()) for t in topics):
            return
        if time.monotonic() > deadline:
            raise DlqError(f"topics {topics} have no partition leaders yet")
        time.sleep(0.2)


def _consumer(bootstrap: str, group_id: str) -> Consumer:
    return Consumer(client_config(bootstrap, {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
        "client.id": "cdc-dlq-reprocess",
    }))


def _backlog(consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
    """Per partition, (first unconsumed offset, end offset) for the consumer's group.
    An empty dict when the topic does not exist."""
    metadata = consumer.list_topics(topic, timeout=_KAFKA_TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None:
        if metadata is not None and metadata.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise DlqError(f"cannot read metadata of {topic}: {metadata.error}")
        return {}
    partitions = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
    committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=_KAFKA_TIMEOUT_S)}
    backlog = {}
    for tp in partitions:
        low, high = consumer.get_watermark_offsets(tp, timeout=_KAFKA_TIMEOUT_S, cached=False)
        start = committed[tp.partition]
        # No commit yet (negative sentinel) or records already expired: start at the oldest kept.
        backlog[tp.partition] = (max(start, low) if start >= 0 else low, high)
    return backlog


def dlq_depth(bootstrap: str, topic: str = names.DLQ_TOPIC, group_id: str = names.DLQ_REPROCESS_GROUP) -> int:
    """Entries of ``topic`` the reprocess group has not consumed yet (its total lag).

    Requeued entries count: they are still waiting. For the parked topic, which the group
    reads only to replay parked entries (replay_parked), this is the entries still parked."""
    consumer = _consumer(bootstrap, group_id)
    try:
        return sum(high - start for start, high in _backlog(consumer, topic).values())
    finally:
        consumer.close()


def _read_backlog(consumer: Consumer, topic: str, limit: float,
                  deadline: float) -> tuple[list[Message], dict[int, int]]:
    """Consume what was in ``topic`` when the call began (entries requeued meanwhile wait
    for the next round), up to ``limit`` messages or the deadline.
    Returns the messages and, per partition read, the offset to commit."""
    backlog = {p: span for p, span in _backlog(consumer, topic).items() if span[0] < span[1]}
    if not backlog:
        return [], {}
    consumer.assign([TopicPartition(topic, p, start) for p, (start, _) in backlog.items()])
    ends = {p: high for p, (_, high) in backlog.items()}
    position = {p: start for p, (start, _) in backlog.items()}
    pending = set(backlog)
    messages: list[Message] = []

    def finish(partition: int) -> None:
        pending.discard(partition)
        consumer.pause([TopicPartition(topic, partition)])

    while pending and len(messages) < limit:
        if time.monotonic() > deadline:
            log.warning("DLQ read stopped at the deadline with %d partitions unfinished", len(pending))
            break
        batch = consumer.consume(num_messages=int(min(500, limit - len(messages))), timeout=1.0)
        for msg in batch:
            if msg.error() is not None:
                raise DlqError(f"reading {topic}: {msg.error()}")
            p = msg.partition()
            if p not in pending or msg.offset() >= ends[p]:
                continue  # produced after this round began: the next round reads it
            messages.append(msg)
            position[p] = msg.offset() + 1
            if position[p] >= ends[p]:
                finish(p)
        if not batch:
            # Offsets without a record (control markers) would keep the loop waiting for them.
            for tp in consumer.position([TopicPartition(topic, p) for p in list(pending)]):
                if tp.offset >= ends[tp.partition]:
                    finish(tp.partition)
    commits = {p: off for p, off in position.items() if off > backlog[p][0]}
    return messages, commits


def _entry_limit(max_entries: int | None) -> float:
    """How many messages a round reads at most: ``max_entries``, or the whole backlog."""
    if max_entries is None:
        return math.inf
    if max_entries < 1:
        raise ValueError(f"max_entries must be >= 1, got {max_entries}")
    return max_entries


def _backlog_round(bootstrap: KafkaSettings, topic: str, group_id: str, limit: float, deadline: float,
                   audit_log: Path | None | object, report: ReprocessReport | ReplayReport,
                   write: Callable[[list[Message], DlqWriter], None]) -> bool:
    """Read ``topic``'s backlog (``_read_backlog``), let ``write`` send what each message becomes,
    and commit the offsets read only after Kafka acknowledged every write, so a failure anywhere
    leaves the backlog for the next round. False when there was nothing to read."""
    consumer = _consumer(bootstrap, group_id)
    try:
        messages, commits = _read_backlog(consumer, topic, limit, deadline)
        report.consumed = len(messages)
        if not messages:
            return False
        writer = DlqWriter(bootstrap, audit_log=audit_log)
        write(messages, writer)
        writer.flush()
        consumer.commit(offsets=[TopicPartition(topic, p, off) for p, off in commits.items()],
                        asynchronous=False)
        return True
    finally:
        consumer.close()


def _undecodable_entry(msg: Message, exc: Exception, now: datetime) -> DlqEntry:
    raw = msg.value()
    key = msg.key().decode(errors="replace") if msg.key() else f"{msg.topic()}/{msg.partition()}/{msg.offset()}"
    return DlqEntry(
        idempotency_key=key,
        event={"undecodable_dlq_message": raw.decode(errors="replace") if raw is not None else None},
        error=f"undecodable DLQ entry at {msg.topic()}/{msg.partition()}/{msg.offset()}: {exc}",
        attempts=0, first_failed_at=now, last_failed_at=now, next_attempt_at=now,
    )


@dataclass
class ReprocessReport:
    delivered: int = 0
    requeued: int = 0
    parked: int = 0
    skipped_not_due: int = 0
    consumed: int = 0
    parked_keys: list[str] = field(default_factory=list)


def reprocess(
    bootstrap: str,
    api_url: str,
    token: str,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    base_backoff_s: float = DEFAULT_BACKOFF_S,
    now: datetime | None = None,
    max_entries: int | None = None,
    *,
    dlq_topic: str = names.DLQ_TOPIC,
    parked_topic: str = names.PARKED_TOPIC,
    group_id: str = names.DLQ_REPROCESS_GROUP,
    policy: RetryPolicy = RetryPolicy(),
    http_timeout_s: float = 5.0,
    batch_size: int = 200,
    deadline_s: float = 300.0,
    audit_log: Path | None | object = _AUTO,
    session: requests.Session | None = None,
) -> ReprocessReport:
    """One bounded round over the DLQ backlog: deliver what is due, requeue or park the rest.

    ``max_attempts`` counts delivery rounds, the sink's included: an entry whose
    attempts reach it after a failure is parked. Entries not yet due are passed on
    unchanged. Offsets are committed only after Kafka acknowledged every entry this
    round wrote; on any failure nothing is committed and the next round starts over.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    limit = _entry_limit(max_entries)
    now = _utc(now or datetime.now(timezone.utc))
    deadline = time.monotonic() + deadline_s
    ensure_dlq_topics(bootstrap, dlq_topic, parked_topic)
    report = ReprocessReport()

    def deliver_due(messages: list[Message], writer: DlqWriter) -> None:
        def park(entry: DlqEntry) -> None:
            writer.send(parked_topic, entry)
            report.parked += 1
            report.parked_keys.append(entry.idempotency_key)

        due: list[tuple[DlqEntry, DeliveryItem]] = []
        for msg in messages:
            try:
                entry = DlqEntry.decode(msg.value())
            except DlqEntryError as exc:
                park(_undecodable_entry(msg, exc, now))
                continue
            if entry.is_due(now):
                due.append((entry, DeliveryItem(entry.idempotency_key, entry.event)))
            else:
                writer.send(dlq_topic, entry, raw=msg.value())
                report.skipped_not_due += 1

        if due:
            result = deliver(session or make_session(), api_url, token, [item for _, item in due],
                             batch_size=batch_size, timeout=http_timeout_s, policy=policy)
            entry_of = {id(item): entry for entry, item in due}
            report.delivered = len(result.delivered)
            for failure in result.failed:
                updated = entry_of[id(failure.item)].failed_again(describe_failure(failure), now, base_backoff_s)
                if updated.attempts >= max_attempts:
                    park(updated)
                else:
                    writer.send(dlq_topic, updated)
                    report.requeued += 1

    if _backlog_round(bootstrap, dlq_topic, group_id, limit, deadline, audit_log, report, deliver_due):
        log.info("DLQ round over %s: %s", dlq_topic, report)
    return report


@dataclass
class ReplayReport:
    requeued: int = 0
    kept: int = 0
    consumed: int = 0
    requeued_keys: list[str] = field(default_factory=list)


def replay_parked(
    bootstrap: str,
    keys: Collection[str] | None = None,
    now: datetime | None = None,
    max_entries: int | None = None,
    *,
    dlq_topic: str = names.DLQ_TOPIC,
    parked_topic: str = names.PARKED_TOPIC,
    group_id: str = names.DLQ_REPROCESS_GROUP,
    deadline_s: float = 300.0,
    audit_log: Path | None | object = _AUTO,
) -> ReplayReport:
    """Move parked entries back to the DLQ, due now with their attempts reset, so the next
    reprocess round delivers them (once the API is healthy again; their idempotency keys make
    a redelivery harmless).

    ``keys``: only the entries with these idempotency keys; the others stay parked (appended
    to the parked topic again, byte for byte). None: every parked entry. An entry that cannot
    be decoded stays parked. Offsets are committed only after Kafka acknowledged every write.
    """
    limit = _entry_limit(max_entries)
    wanted = None if keys is None else set(keys)
    now = _utc(now or datetime.now(timezone.utc))
    ensure_dlq_topics(bootstrap, dlq_topic, parked_topic)
    report = ReplayReport()

    def requeue_wanted(messages: list[Message], writer: DlqWriter) -> None:
        for msg in messages:
            try:
                entry = DlqEntry.decode(msg.value())
            except DlqEntryError as exc:
                writer.send(parked_topic, _undecodable_entry(msg, exc, now), raw=msg.value())
                report.kept += 1
                continue
            if wanted is not None and entry.idempotency_key not in wanted:
                writer.send(parked_topic, entry, raw=msg.value())
                report.kept += 1
                continue
            writer.send(dlq_topic, replace(entry, attempts=0, next_attempt_at=now))
            report.requeued += 1
            report.requeued_keys.append(entry.idempotency_key)

    if _backlog_round(bootstrap, parked_topic, group_id, limit, time.monotonic() + deadline_s, audit_log, report,
                      requeue_wanted):
        log.info("parked entries replayed from %s: %s", parked_topic, report)
    return report
