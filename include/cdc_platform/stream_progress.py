"""How far the stream has got: its queries' committed micro-batches and offsets, read from the
Spark checkpoints and compared with the topics' end offsets. Used by the ``cdc_resnapshot``
sweep (which waits for the stream to catch up), the demo, the benchmark and the tests.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from cdc_platform.health.checks import STREAM_QUERIES, latest_committed_offsets
from cdc_platform.sink_ledger import query_checkpoint


def stream_checkpoint_root(env) -> Path:
    from cdc_platform.state_paths import checkpoint_root

    return Path(checkpoint_root(env))


def stream_batches(env) -> dict[str, int]:
    """The number of committed micro-batches per stream query (0 before the first)."""
    root = stream_checkpoint_root(env)
    counts = {}
    for query in STREAM_QUERIES:
        commits = query_checkpoint(root, query) / "commits"
        counts[query] = len([p for p in commits.iterdir() if p.name.isdigit()]) if commits.is_dir() else 0
    return counts


def queries_caught_up(env) -> dict[str, bool]:
    """Per stream query: its last committed offsets equal its topics' end offsets."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": "cdc-runbook",
                         "enable.auto.commit": False, "log_level": 0})
    try:
        caught_up = {}
        for query in STREAM_QUERIES:
            committed = latest_committed_offsets(query_checkpoint(stream_checkpoint_root(env), query))
            caught_up[query] = committed is not None and all(
                offset >= consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
                for topic, partitions in committed[0].items() for partition, offset in partitions.items())
        return caught_up
    finally:
        consumer.close()


def stream_caught_up(env) -> bool:
    """Every query's last committed offsets equal the topics' end offsets."""
    return all(queries_caught_up(env).values())


def wait_caught_up(env, timeout: float = 300, log: Callable[[str], None] | None = None) -> float:
    started = time.monotonic()
    while not stream_caught_up(env):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"stream not caught up after {timeout:.0f}s: batches {stream_batches(env)}")
        time.sleep(1)
    return time.monotonic() - started
