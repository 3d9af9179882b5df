"""The sinks' ceilings: each sink's own writer absorbing the backlog's number of changes in this
process, without Spark.

Each sink module of the stream (``cdc_stream.<sink>_sink``) has ``write_changes(changes,
contents, settings)``: the executor-side code its query runs, on normalized change dicts (what
``change_log.decode`` returns) and content changes, with the job's ``SinkSettings``. The bench
calls it directly with synthetic changes (load.sink_changes) and times it; no content changes
(the backlog changes none either).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import time
from typing import Callable

from cdc_platform import connections, names

from cdc_local.bench import logic, measure

# The stack service each sink writes to (supervisord's program names).
SINK_SERVICE = {"cassandra": "cassandra", "redis": "redis", "rest": "restapi"}
# Sinks whose writes a delete undoes (the REST service keeps every event it was sent).
UNDOABLE = ("cassandra", "redis")

WriteChanges = Callable[[list, list, object], object]


def kafka_connection(env) -> dict:
    """The extras of the stack's Airflow Kafka connection (what the stream's operator hands the
    job as its Kafka client config), from AIRFLOW_CONN_KAFKA_DEFAULT's JSON; {} without it."""
    raw = env.get(f"AIRFLOW_CONN_{connections.KAFKA_CONN_ID.upper()}")
    if not raw:
        return {}
    try:
        conn = json.loads(raw)
    except json.JSONDecodeError:
        return {}  # a URI connection: no client settings beyond the servers
    extra = conn.get("extra") if isinstance(conn, dict) else None
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError:
            return {}
    return dict(extra) if isinstance(extra, dict) else {}


def sink_settings(env):
    """The job's SinkSettings as the stream gets them from the stack (include/cdc_platform/
    operators/stream.py and cdc_stream.job.config_from_args): the Cassandra sink role, the Redis
    URL, the REST API and token, the Kafka connection."""
    from cdc_platform.cluster import ClusterSettings
    from cdc_stream.config import SinkSettings

    kafka = kafka_connection(env)
    bootstrap = kafka.pop("bootstrap.servers", None) or env["KAFKA_BOOTSTRAP"]
    user = env.get("CASSANDRA_SINK_USER") or None
    return SinkSettings(
        bootstrap=bootstrap,
        cassandra_host=env["CASSANDRA_HOST"],
        cassandra_port=int(env.get("CASSANDRA_PORT") or 9042),
        cassandra_keyspace=env.get("CASSANDRA_KEYSPACE") or names.CASSANDRA_KEYSPACE,
        cassandra_user=user,
        cassandra_password=env.get("CASSANDRA_SINK_PASSWORD") if user else None,
        cassandra_consistency=ClusterSettings.from_env({**env, **os.environ}).cassandra_consistency,
        redis_url=env.get("REDIS_URL"),
        api_url=env.get("API_URL"),
        api_token=env.get("API_TOKEN"),
        kafka_connection=kafka,
    )


def writer(sink: str) -> WriteChanges:
    module = importlib.import_module(f"cdc_stream.{sink}_sink")
    write = getattr(module, "write_changes", None)
    if write is None:
        raise RuntimeError(f"cdc_stream.{sink}_sink has no write_changes(changes, contents, settings): "
                           "this checkout's sink cannot be measured without Spark")
    return write


def stats_dict(stats) -> dict:
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    if isinstance(stats, dict):
        return dict(stats)
    return {"value": repr(stats)}


def write_all(write: WriteChanges, changes: list[dict], settings, batch: int) -> dict:
    """``changes`` through ``write`` in calls of ``batch`` (0: one call); the summed stats."""
    size = batch if batch > 0 else max(1, len(changes))
    parts = [stats_dict(write(changes[i:i + size], [], settings)) for i in range(0, len(changes), size)]
    return logic.sum_stats(parts)


def measure_writer(sink: str, write: WriteChanges, changes: list[dict], settings, batch: int,
                   cores: int) -> dict:
    """Wall clock and this process's CPU while ``write`` absorbs ``changes``, and every
    service's CPU over the same window (snapshots before and after: no sampling thread
    runs meanwhile, so this process's CPU is the writer's own)."""
    cpu = measure.CpuSampler(interval=None).start()
    started_cpu, started = time.process_time(), time.perf_counter()
    stats = write_all(write, changes, settings, batch)
    wall = time.perf_counter() - started
    bench_cpu = time.process_time() - started_cpu
    cpu.stop()
    # The services' CPU between the two snapshots, which bracket the writes by a few milliseconds.
    groups, machine = cpu.between(cpu.samples[0][0], cpu.samples[-1][0])
    groups.pop(measure.BENCH_GROUP, None)  # this process: measured exactly by process_time
    figures = logic.sink_ceiling_figures(len(changes), wall, bench_cpu, groups, machine, cores)
    figures["service"] = SINK_SERVICE.get(sink)
    figures["stats"] = stats
    figures["calls"] = -(-len(changes) // (batch if batch > 0 else max(1, len(changes))))
    return figures
