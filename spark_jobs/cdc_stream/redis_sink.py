"""Redis sink: applies each micro-batch of normalized changes to the real-time aggregates.

``write_batch`` takes a micro-batch of normalized records (topic, value: change_log).
Exactly-once effect comes from the per-row position fences in
cdc_platform.aggregates, so a re-run micro-batch or a replayed Kafka range is harmless.
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from cdc_platform import redis_client
from cdc_platform.aggregates import ApplyStats, Change, apply_changes, commit_batch
from cdc_stream import change_log

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

# One client (and connection pool) per Python process, executors and driver alike.
_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def client_for(redis_url: str) -> redis.Redis:
    with _clients_lock:
        client = _clients.get(redis_url)
        if client is None:
            # Retrying a pipeline re-sends calls that may have run; the fences make that a no-op.
            client = redis_client.connect(
                redis_url, socket_timeout=30, socket_connect_timeout=10, health_check_interval=30,
                retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 3),
                retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
            _clients[redis_url] = client
        return client


def to_change(change: dict) -> Change:
    """A Change from a decoded normalized change (change_log.decode; event_ts in epoch micros)."""
    if change.get("id") is None:
        raise ValueError("change without an id")
    if change.get("position") is None:
        raise ValueError(f"change for row {change['id']} without a position")
    pct = change.get("engagement_pct")
    ts = change.get("event_ts")
    return Change(id=int(change["id"]), op=change["op"], position=int(change["position"]),
                  content_id=change.get("content_id"), event_ts_ms=None if ts is None else int(ts) // 1000,
                  device=change.get("device"), engagement_pct=None if pct is None else float(pct))


def write_changes(changes: Sequence[dict], contents: Sequence[dict], settings) -> ApplyStats:
    """The fan-out's interface (shared with the Cassandra and REST sinks): decoded event changes
    (change_log.decode) to the Redis of ``settings.redis_url``; content changes do not touch the
    aggregates."""
    return apply_decoded(changes, settings.redis_url)


def apply_decoded(changes: Sequence[dict], redis_url: str) -> ApplyStats:
    """Apply decoded event changes through this process's client for ``redis_url``. A change
    that cannot become a Change is a contract breach upstream (the transforms quarantine bad
    records): it is logged and counted, not applied."""
    rejected = 0

    def to_changes() -> Iterator[Change]:
        nonlocal rejected
        for change in changes:
            try:
                yield to_change(change)
            except (ValueError, TypeError, KeyError) as exc:
                rejected += 1
                log.error("redis sink: rejected change %r: %s", change, exc)

    if not changes:
        return ApplyStats()
    stats = apply_changes(client_for(redis_url), to_changes())
    return ApplyStats(applied=stats.applied, skipped_stale=stats.skipped_stale, rejected=rejected)


def apply_partition(redis_url: str, records: Iterable[Any]) -> Iterator[ApplyStats]:
    """Apply one partition's normalized records (topic, value) and yield its stats (a single element)."""
    changes, undecodable = [], 0
    for _topic, value in records:
        try:
            changes.append(change_log.decode(value))
        except ValueError as exc:
            undecodable += 1
            log.error("redis sink: rejected record %r: %s", value, exc)
    stats = apply_decoded(changes, redis_url)
    yield ApplyStats(applied=stats.applied, skipped_stale=stats.skipped_stale, rejected=stats.rejected + undecodable)


def write_batch(records: "DataFrame", batch_id: int, settings) -> ApplyStats:
    """Apply a micro-batch of normalized records (topic, value), then record batch_id in the watermark.

    Partitions are applied in parallel, each through its process's cached client, with
    mapPartitions rather than foreachPartition so the per-partition stats reach the driver.
    """
    redis_url = settings.redis_url
    partials = records.select("topic", "value").rdd.mapPartitions(
        functools.partial(apply_partition, redis_url)).collect()
    stats = sum(partials, ApplyStats())
    commit_batch(client_for(redis_url), batch_id)
    if stats.rejected:
        log.warning("redis sink: batch %s rejected %d changes (see executor logs)", batch_id, stats.rejected)
    log.info("redis sink: batch %s applied=%d skipped_stale=%d", batch_id, stats.applied, stats.skipped_stale)
    return stats
