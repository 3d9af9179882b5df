"""Benchmark of the running pipeline (`make bench`): throughput and end-to-end latency.

Needs the stack up and the stream running (`make demo` leaves it so). Prints the figures
and writes them to bench/results/<UTC timestamp>.json.

* burst: N changes written as fast as PostgreSQL takes them; then the time until each
  stream query (cassandra, redis, rest) has committed the topics' end offsets.
* latency: single inserts on an idle pipeline, timed from COMMIT until the row is
  readable in Cassandra and counted in Redis.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from cdc_platform import names, runbook, traffic
from cdc_platform.stack import envfile
from cdc_platform.stack.config import StackConfig
from cdc_platform.watchdog import STREAM_QUERIES, latest_committed_offsets

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"


def _end_offsets(env) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": env["KAFKA_BOOTSTRAP"], "group.id": "cdc-bench", "log_level": 0})
    try:
        ends = {}
        for topic in (names.EVENTS_TOPIC, names.CONTENT_TOPIC):
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                ends[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return ends
    finally:
        consumer.close()


def _query_reached(env, query: str, ends: dict[tuple[str, int], int]) -> bool:
    committed = latest_committed_offsets(runbook.stream_checkpoint_root(env) / query)
    if committed is None:
        return False
    offsets = committed[0]
    return all(offsets.get(topic, {}).get(p, 0) >= end for (topic, p), end in ends.items())


def burst(env, changes: int, seed: int, timeout: float = 900) -> dict:
    runbook.wait_caught_up(env, timeout=300)
    start = time.monotonic()
    stats = traffic.run(env["PG_DSN"], changes, rate=0, seed=seed, progress_every=0)
    written = time.monotonic()
    # Debezium is asynchronous: the end offsets count only once they stop growing.
    ends = _end_offsets(env)
    settle_deadline = time.monotonic() + 60
    while True:
        time.sleep(1)
        newer = _end_offsets(env)
        if newer == ends or time.monotonic() > settle_deadline:
            break
        ends = newer
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(STREAM_QUERIES):
        for query in STREAM_QUERIES:
            if query not in done and _query_reached(env, query, ends):
                done[query] = time.monotonic() - start
        if time.monotonic() > deadline:
            raise TimeoutError(f"queries not caught up after {timeout:.0f}s: {done}")
        time.sleep(0.5)
    slowest = max(done.values())
    return {
        "changes": changes,
        "inserts": stats.inserts, "updates": stats.updates, "deletes": stats.deletes,
        "source_write_seconds": round(written - start, 2),
        "source_write_rate_per_s": round(changes / (written - start), 1),
        "caught_up_seconds": {q: round(s, 2) for q, s in done.items()},
        "end_to_end_throughput_per_s": round(changes / slowest, 1),
    }


def latency(env, samples: int) -> dict:
    import psycopg2
    import redis

    from cdc_platform.clients import cassandra_cluster

    pg = psycopg2.connect(env["PG_DSN"])
    client = redis.Redis.from_url(env["REDIS_URL"])
    cluster = cassandra_cluster(env["CASSANDRA_HOST"], env["CASSANDRA_PORT"])
    session = cluster.connect()
    select = session.prepare(f"SELECT id FROM {names.CASSANDRA_KEYSPACE}.{names.CASSANDRA_EVENTS_TABLE} WHERE id = ?")
    with pg.cursor() as cur:
        cur.execute(f"SELECT id::text FROM {names.PG_CONTENT_TABLE} WHERE length_seconds > 0 LIMIT 1")
        content_id = cur.fetchone()[0]
    to_cassandra, to_redis = [], []
    try:
        for _ in range(samples):
            runbook.wait_caught_up(env, timeout=120)
            with pg.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {names.PG_EVENTS_TABLE} (content_id, user_id, event_type, event_ts, duration_ms, "
                    "device) VALUES (%s, %s, 'play', now() AT TIME ZONE 'utc', 1000, 'tv') RETURNING id",
                    (content_id, str(uuid.uuid4())))
                rid = cur.fetchone()[0]
            pg.commit()
            committed = time.monotonic()
            seen_c = seen_r = None
            while seen_c is None or seen_r is None:
                if seen_c is None and session.execute(select, (rid,)).one():
                    seen_c = time.monotonic() - committed
                if seen_r is None and client.exists(f"{names.REDIS_ROW_PREFIX}{rid}"):
                    seen_r = time.monotonic() - committed
                if time.monotonic() - committed > 120:
                    raise TimeoutError(f"row {rid} not visible after 120s")
                time.sleep(0.05)
            to_cassandra.append(seen_c)
            to_redis.append(seen_r)
    finally:
        cluster.shutdown()
        pg.close()

    def summary(values: list[float]) -> dict:
        ordered = sorted(values)
        return {"p50_s": round(statistics.median(ordered), 3),
                "p95_s": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 3),
                "max_s": round(ordered[-1], 3)}

    return {"samples": samples, "commit_to_cassandra": summary(to_cassandra), "commit_to_redis": summary(to_redis)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=99)
    args = parser.parse_args(argv)
    cfg = StackConfig.load()
    env = envfile.read_or_exit(cfg, "run `make demo` first")
    client = runbook.airflow_client(env)
    runbook.start_stream(client, env)
    print(f"==> burst: {args.changes} changes, as fast as PostgreSQL takes them", flush=True)
    burst_result = burst(env, args.changes, args.seed)
    print(json.dumps(burst_result, indent=2), flush=True)
    print(f"==> latency: {args.latency_samples} single inserts on an idle pipeline", flush=True)
    latency_result = latency(env, args.latency_samples)
    print(json.dumps(latency_result, indent=2), flush=True)
    result = {
        "measured_at": datetime.now(timezone.utc).isoformat(),
        "machine": {"cpus": os.cpu_count()},
        "trigger_seconds": 5,
        "burst": burst_result,
        "latency": latency_result,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"==> written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
