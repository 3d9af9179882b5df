"""What the benchmark reads from the running platform: Kafka end offsets, Spark checkpoints,
process trees and the sinks' applied times. Read-only; each reader owns its clients.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from cdc_platform import names
from cdc_local.bench import logic

SOURCE_TOPICS = (names.EVENTS_TOPIC, names.CONTENT_TOPIC)


def stream_queries() -> tuple[str, ...]:
    from cdc_platform.health.checks import STREAM_QUERIES

    return tuple(STREAM_QUERIES)


def checkpoint_root(env) -> Path:
    from cdc_platform import stream_progress

    return stream_progress.stream_checkpoint_root(env)


def committed(root: Path, query: str):
    """(offsets, mtime) of the query's last committed batch, or None."""
    from cdc_platform.health.checks import latest_committed_offsets

    try:
        from cdc_platform.sink_ledger import query_checkpoint

        return latest_committed_offsets(query_checkpoint(root, query))
    except (OSError, ValueError):
        return None  # a batch being written while we read: next poll


def first_reaching_commit(root: Path, query: str, ends: logic.Offsets, max_batches: int = 200) -> float | None:
    """mtime of the earliest committed batch, among the newest ones, whose offsets reach ``ends``."""
    from cdc_platform.health.checks import parse_offsets_file

    from cdc_platform.sink_ledger import query_checkpoint

    checkpoint = query_checkpoint(root, query)
    try:
        batches = sorted((int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit()), reverse=True)
        earliest = None
        for batch in batches[:max_batches]:
            if not logic.reached(parse_offsets_file((checkpoint / "offsets" / str(batch)).read_text()), ends):
                break
            earliest = (checkpoint / "commits" / str(batch)).stat().st_mtime
        return earliest
    except (OSError, ValueError):
        return None  # a batch being written or cleaned up while we read: the last commit's time


# --- Kafka --------------------------------------------------------------------------------

class EndOffsets:
    """End (high watermark) offsets, read from the broker on every call. One per thread."""

    def __init__(self, bootstrap: str):
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cdc-bench",
                                  "enable.auto.commit": False, "log_level": 0})
        self._partitions: dict[str, list[int]] = {}

    def close(self) -> None:
        self.consumer.close()

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            meta = self.consumer.list_topics(topic, timeout=10).topics.get(topic)
            self._partitions[topic] = sorted(meta.partitions) if meta and not meta.error else []
        return self._partitions[topic]

    def end(self, topic: str, partition: int) -> int:
        from confluent_kafka import TopicPartition

        return self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[1]

    def ends_like(self, offsets: logic.Offsets) -> dict[str, dict[int, int]]:
        """End offsets of exactly the topics and partitions in ``offsets`` (a checkpoint's)."""
        return {t: {p: self.end(t, p) for p in parts} for t, parts in offsets.items()}

    def total(self, topics: Iterable[str] = SOURCE_TOPICS) -> int:
        return sum(self.end(t, p) for t in topics for p in self.partitions(t))


def query_lags(offsets: EndOffsets, root: Path, queries: Iterable[str]) -> dict[str, int | None]:
    """Messages behind per query (None: no committed batch yet)."""
    lags: dict[str, int | None] = {}
    for query in queries:
        found = committed(root, query)
        lags[query] = None if found is None else logic.lag(found[0], offsets.ends_like(found[0]))
    return lags


def format_lags(lags: dict[str, int | None]) -> str:
    return " ".join(f"{q}={'-' if v is None else f'{v:,}'}" for q, v in lags.items())


class Periodic(threading.Thread):
    """Calls ``sample()`` every ``interval`` seconds and keeps ``(time, value)``; errors are kept, not raised."""

    def __init__(self, name: str, interval: float, sample: Callable[[], object],
                 setup: Callable[[], None] | None = None, teardown: Callable[[], None] | None = None):
        super().__init__(name=f"bench-{name}", daemon=True)
        self.interval, self._sample, self._setup, self._teardown = interval, sample, setup, teardown
        self.samples: list[tuple[float, object]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        if self._setup:
            self._setup()
        try:
            next_at = time.time()
            while not self._halt.is_set():
                try:
                    value = self._sample()
                    self.samples.append((time.time(), value))
                except Exception as exc:  # noqa: BLE001 - a failed sample is reported, the run goes on
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                next_at += self.interval
                self._halt.wait(max(0.0, next_at - time.time()))
        finally:
            if self._teardown:
                self._teardown()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def latest(self):
        return self.samples[-1][1] if self.samples else None


def source_sampler(bootstrap: str, interval: float) -> Periodic:
    """Sums the source topics' end offsets every ``interval`` (Debezium's progress into Kafka)."""
    holder: dict[str, EndOffsets] = {}

    def setup() -> None:
        holder["o"] = EndOffsets(bootstrap)

    def sample() -> int:
        return holder["o"].total()

    def teardown() -> None:
        holder.pop("o").close()

    return Periodic("capture", interval, sample, setup, teardown)


def lag_sampler(bootstrap: str, root: Path, queries: tuple[str, ...], interval: float) -> Periodic:
    holder: dict[str, EndOffsets] = {}

    def setup() -> None:
        holder["o"] = EndOffsets(bootstrap)

    def sample() -> dict[str, int | None]:
        return query_lags(holder["o"], root, queries)

    def teardown() -> None:
        holder.pop("o").close()

    return Periodic("lag", interval, sample, setup, teardown)


def wait_settled(sampler: Periodic, expected_messages: int, baseline: int, quiet_s: float = 3.0,
                 timeout: float = 300.0, say: Callable[[str], None] = print) -> bool:
    """After the writer finished: wait until the source end offsets stop growing.

    Settled = unchanged for ``quiet_s`` once at least 99 % of the expected messages arrived, or
    unchanged for ten times as long in any case (an update that touched no row makes no message)."""
    started = time.time()
    next_say = started + 5
    while True:
        time.sleep(sampler.interval)
        samples = sampler.samples
        if not samples:
            continue
        now, total = time.time(), samples[-1][1]
        moved_at = samples[-1][0]  # when the current total was first seen
        for t, v in reversed(samples):
            if v != total:
                break
            moved_at = t
        quiet = now - moved_at
        if quiet >= quiet_s and (total - baseline >= 0.99 * expected_messages or quiet >= 10 * quiet_s):
            return True
        if now - started > timeout:
            say(f"    capture: end offsets still moving after {timeout:.0f}s; going on")
            return False
        if now >= next_say:
            next_say += 5
            say(f"    capture: {total - baseline:,} of about {expected_messages:,} messages in Kafka")


def track_catch_up(bootstrap: str, root: Path, queries: tuple[str, ...], origin: float, timeout: float,
                   say: Callable[[str], None] = print, poll_s: float = 0.5, label: str = "drain") -> logic.CatchUp:
    """Poll the checkpoints until every query has caught up (in pipeline order) or ``timeout``."""
    tracker = logic.CatchUp(queries, origin)
    offsets = EndOffsets(bootstrap)
    started = time.time()
    next_say = started + 5
    try:
        while tracker.pending():
            tracker.update(lambda q: committed(root, q), offsets.ends_like, time.time(),
                           reached_at=lambda q, ends: first_reaching_commit(root, q, ends))
            if not tracker.pending():
                break
            now = time.time()
            if now - started > timeout:
                say(f"    {label}: not caught up after {timeout:.0f}s: {', '.join(tracker.pending())}")
                break
            if now >= next_say:
                next_say += 5
                done = ", ".join(f"{q} {s:.1f}s" for q, s in tracker.seconds().items() if s is not None)
                say(f"    {label}: {now - origin:.0f}s; behind: {format_lags(query_lags(offsets, root, queries))}"
                    + (f"; caught up: {done}" if done else ""))
            time.sleep(poll_s)
    finally:
        offsets.close()
    return tracker


def wait_idle(bootstrap: str, root: Path, queries: tuple[str, ...], timeout: float,
              say: Callable[[str], None] = print) -> bool:
    """Every query has committed up to the current end offsets of its topics (an idle pipeline)."""
    offsets = EndOffsets(bootstrap)
    started = time.time()
    next_say = started + 10
    try:
        while True:
            lags = query_lags(offsets, root, queries)
            if all(v == 0 for v in lags.values()):
                return True
            if time.time() - started > timeout:
                say(f"    pipeline still behind after {timeout:.0f}s ({format_lags(lags)}); going on")
                return False
            if time.time() >= next_say:
                next_say += 10
                say(f"    waiting for the pipeline to catch up: {format_lags(lags)}")
            time.sleep(1)
    finally:
        offsets.close()


def tombstones_enabled(env) -> bool:
    """Debezium's ``tombstones.on.delete`` (default true): a delete then makes two messages."""
    try:
        from cdc_platform.connect_rest_client import KafkaConnectClient

        config = KafkaConnectClient(env["CONNECT_URL"]).get_config(names.CONNECTOR_NAME) or {}
    except Exception:  # noqa: BLE001 - unknown: assume Debezium's default
        return True
    return str(config.get("tombstones.on.delete", "true")).lower() == "true"


# --- footprint ----------------------------------------------------------------------------

SPARK_GROUP = logic.SPARK_GROUP
BENCH_GROUP = "bench (load generator)"


def _descendants(pid: int) -> list:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def process_groups() -> dict[str, list]:
    """Processes per stack service (supervisord's process trees), the Spark driver and this bench.
    The Spark driver runs under an Airflow task: its tree is counted once, as its own group."""
    import psutil

    from cdc_local import pipeline_driver
    from cdc_local.stack.config import StackConfig
    from cdc_local.stack.supervisor import Supervisor

    spark = {p.pid: p for pid in pipeline_driver.stream_driver_pids() for p in _descendants(pid)}
    groups: dict[str, list] = {SPARK_GROUP: list(spark.values())}
    for name, info in sorted(Supervisor(StackConfig.load()).all_info().items()):
        if info.get("pid"):
            groups[name] = [p for p in _descendants(info["pid"]) if p.pid not in spark]
    groups[BENCH_GROUP] = [psutil.Process(os.getpid())]
    return groups


class Footprint:
    """Samples CPU time (every ``interval``) and memory (every ``memory_every`` samples) of each group."""

    def __init__(self, interval: float = 2.0, memory_every: int = 3):
        import psutil

        self.started = time.time()
        self.cpu = logic.CpuAccount(self.started)
        self.memory: dict[str, list[tuple[int, int]]] = {}
        self.totals: list[int] = []
        self._machine_start = psutil.cpu_times()
        self._n = 0
        self.memory_every = memory_every
        self.thread = Periodic("footprint", interval, self._sample)
        self.thread.start()

    def _sample(self) -> None:
        import psutil

        with_memory = self._n % self.memory_every == 0
        self._n += 1
        total = 0
        for group, procs in process_groups().items():
            pss_sum = rss_sum = 0
            for proc in procs:
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        self.cpu.observe(group, (proc.pid, proc.create_time()), proc.create_time(),
                                         times.user + times.system)
                        if with_memory:
                            rss = proc.memory_info().rss
                            try:
                                pss = proc.memory_full_info().pss
                            except (psutil.AccessDenied, AttributeError):
                                pss = rss
                            pss_sum, rss_sum = pss_sum + pss, rss_sum + rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            if with_memory:
                self.memory.setdefault(group, []).append((pss_sum, rss_sum))
                total += pss_sum
        if with_memory:
            self.totals.append(total)

    def stop(self) -> dict:
        import psutil

        self.thread.stop()
        wall = time.time() - self.started
        end = psutil.cpu_times()
        idle = lambda t: t.idle + getattr(t, "iowait", 0.0)  # noqa: E731
        busy = (sum(end) - idle(end)) - (sum(self._machine_start) - idle(self._machine_start))
        summary = logic.footprint_summary(self.cpu.seconds(), self.memory, self.totals, wall,
                                          os.cpu_count() or 1, busy)
        if self.thread.errors:
            summary["sample_errors"] = self.thread.errors[:5]
        return summary


def format_footprint(summary: dict) -> list[str]:
    lines = [f"    {'group':<24} {'CPU cores':>9} {'CPU %':>6} {'PSS MiB':>8} {'max':>7}"]
    for name, g in sorted(summary["groups"].items(), key=lambda kv: -(kv[1]["cpu_cores"] or 0)):
        lines.append(f"    {name:<24} {g['cpu_cores'] or 0:>9.2f} {g['cpu_share_pct'] or 0:>6.1f} "
                     f"{g['pss_mean_mib'] or 0:>8.0f} {g['pss_max_mib'] or 0:>7.0f}")
    lines.append(f"    machine busy {summary['machine_busy_pct']}% of {os.cpu_count()} cores; "
                 f"stack resident (PSS) peak {summary['total_pss_max_mib']} MiB")
    return lines


# --- CPU by process tree (one pass over /proc per sample) -----------------------------------

MACHINE = "(machine)"   # key of the machine's busy seconds in CpuSampler's samples


class CpuSampler:
    """Cumulative CPU seconds of the Spark side of the stream (the spark-submit JVM, its Python
    driver and every Python worker they fork: logic.is_spark_process' trees), of each stack
    service (supervisord's process trees, without the Spark trees an Airflow worker holds) and of
    this bench; plus the machine's busy seconds. One pass over /proc per sample, every
    ``interval`` seconds in a thread, or only at start() and stop() with ``interval`` None
    (for windows where the sampler's own CPU would blur this process's figure). Any window's
    CPU per group comes from the samples by interpolation (``between``)."""

    def __init__(self, interval: float | None = 1.0, refresh_services_s: float = 15.0):
        self.interval = interval
        self.refresh_services_s = refresh_services_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.errors: list[str] = []
        self._services: dict[str, int] = {}
        self._services_at = float("-inf")
        self._thread: Periodic | None = None
        self._lock = threading.Lock()
        self.account: logic.CpuAccount | None = None
        self._machine0 = 0.0
        self.last_groups: dict[int, str] = {}   # pid -> group at the last sample
        self._initial: set[tuple[int, float]] | None = None   # the processes of the first sample

    def start(self) -> "CpuSampler":
        import psutil

        self.started = time.time()
        self.account = logic.CpuAccount(self.started)
        self._machine0 = logic.busy_seconds(psutil.cpu_times()._asdict())
        self.sample()
        if self.interval:
            self._thread = Periodic("cpu", self.interval, self.sample)
            self._thread.start()
        return self

    def stop(self) -> "CpuSampler":
        if self._thread is not None:
            self._thread.stop()
            self.errors += self._thread.errors
            self._thread = None
        self.sample()
        return self

    def _service_roots(self, now: float) -> dict[str, int]:
        if now - self._services_at >= self.refresh_services_s:
            from cdc_local.stack.config import StackConfig
            from cdc_local.stack.supervisor import Supervisor

            try:
                info = Supervisor(StackConfig.load()).all_info()
                self._services = {name: i["pid"] for name, i in info.items() if i.get("pid")}
            except Exception as exc:  # noqa: BLE001 - no service groups this time; the Spark one still counts
                self.errors.append(f"supervisor: {type(exc).__name__}: {exc}")
            self._services_at = now
        return self._services

    def sample(self) -> None:
        import psutil

        from cdc_local.pipeline_driver import STREAM_APPLICATION

        with self._lock:
            parents: dict[int, int] = {}
            cpu: dict[int, tuple[float, float]] = {}
            spark: list[int] = []
            for proc in psutil.process_iter(["pid", "ppid", "create_time", "cpu_times", "cmdline", "status"]):
                i = proc.info
                if i["cpu_times"] is None or i["create_time"] is None or i["status"] == psutil.STATUS_ZOMBIE:
                    # Gone or not readable; a zombie has no more CPU to add, and without its
                    # command line it would be taken for its parent's group.
                    continue
                parents[i["pid"]] = i["ppid"]
                cpu[i["pid"]] = (i["create_time"], i["cpu_times"].user + i["cpu_times"].system)
                if logic.is_spark_process(i["cmdline"] or [], STREAM_APPLICATION):
                    spark.append(i["pid"])
            services = self._service_roots(time.time())
            if any(pid not in parents for pid in services.values()):
                self._services_at = float("-inf")  # a service restarted: its new pid next time
            roots = [(SPARK_GROUP, spark), *((name, [pid]) for name, pid in sorted(services.items())),
                     (BENCH_GROUP, [os.getpid()])]
            self.last_groups = logic.assign_groups(parents, roots)
            if self._initial is None:
                self._initial = {(pid, cpu[pid][0]) for pid in parents}
            for pid, group in self.last_groups.items():
                created, seconds = cpu[pid]
                # New since the first sample: all its CPU is in the window. (A process's start
                # time from /proc is only as precise as the boot time, whole seconds.)
                born = self.started - 1.0 if (pid, created) in self._initial else self.started
                self.account.observe(group, (pid, created), born, seconds)
            totals = self.account.seconds()
            totals[MACHINE] = logic.busy_seconds(psutil.cpu_times()._asdict()) - self._machine0
            self.samples.append((time.time(), totals))

    def between(self, t0: float, t1: float) -> tuple[dict[str, float], float | None]:
        """(CPU seconds per group, the machine's busy seconds) within [t0, t1]."""
        with self._lock:
            samples = list(self.samples)
        values = logic.cpu_between(samples, t0, t1)
        machine = values.pop(MACHINE, None)
        for group in {g for _, v in samples for g in v} - {MACHINE}:
            values.setdefault(group, 0.0)
        return values, machine

    def spark_seconds(self, t0: float, t1: float) -> float:
        return self.between(t0, t1)[0].get(SPARK_GROUP, 0.0)


def wait_spark_settled(min_age_s: float = 60.0, window_s: float = 5.0, timeout_s: float = 240.0,
                       say: Callable[[str], None] = print) -> dict:
    """Until the Spark side is past its start-up: its processes have run ``min_age_s`` and its
    CPU over the last two windows of ``window_s`` agrees (logic.cpu_settled). Returns what it
    waited for; at once when no Spark side runs."""
    import psutil

    from cdc_local.pipeline_driver import STREAM_APPLICATION

    started = time.time()
    ages = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        if logic.is_spark_process(proc.info["cmdline"] or [], STREAM_APPLICATION) and proc.info["create_time"]:
            ages.append(started - proc.info["create_time"])
    if not ages:
        return {"spark": False, "waited_s": 0.0}
    young = min_age_s - min(ages)
    if young > 0:
        say(f"    the Spark side started {min(ages):.0f}s ago: waiting {young:.0f}s before measuring its idle cost")
        time.sleep(young)
    windows: list[float] = []
    cpu = CpuSampler(interval=None).start()
    try:
        while not logic.cpu_settled(windows) and time.time() - started < timeout_s:
            t0 = time.time()
            time.sleep(window_s)
            cpu.sample()
            windows.append(round(cpu.spark_seconds(t0, time.time()) / (time.time() - t0), 3))
    finally:
        cpu.stop()
    settled = logic.cpu_settled(windows)
    if not settled:
        say(f"    the Spark side's CPU did not settle within {timeout_s:.0f}s: {windows} cores per {window_s:.0f}s")
    return {"spark": True, "settled": settled, "waited_s": round(time.time() - started, 1),
            "cores_per_window": windows, "window_s": window_s}


def format_cpu(columns: dict[str, dict], cores: int | None = None) -> list[str]:
    """Cores per group side by side for each window (label -> logic.cpu_summary)."""
    labels = list(columns)
    names_ = sorted({g for c in columns.values() for g in c["groups"]},
                    key=lambda g: -max((c["groups"].get(g) or {}).get("cores", 0) for c in columns.values()))
    lines = [f"    {'cores used':<26}" + "".join(f"{label:>14}" for label in labels)]
    for name in names_:
        lines.append(f"    {name:<26}" + "".join(
            f"{(columns[label]['groups'].get(name) or {}).get('cores', 0):>14.3f}" for label in labels))
    lines.append(f"    {'outside these groups':<26}" + "".join(
        f"{columns[label]['outside_groups_cores'] or 0:>14.3f}" for label in labels))
    lines.append(f"    {'machine':<26}" + "".join(f"{columns[label]['machine_cores'] or 0:>14.3f}" for label in labels)
                 + (f"   (of {cores} cores)" if cores else ""))
    return lines


# --- sinks: when was each row applied? ----------------------------------------------------

def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _epoch(dt: datetime) -> float:
    return (dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt).timestamp()


def cassandra_applied(env, row_ids: list[int], chunk: int = 100) -> dict[int, float]:
    """Row id -> ``ingested_at`` (the time the sink wrote the row), for the rows found."""
    from cassandra.concurrent import execute_concurrent_with_args

    from cdc_platform.cassandra_cluster import cassandra_cluster_from_env

    cluster = cassandra_cluster_from_env(env)
    try:
        session = cluster.connect()
        select = session.prepare(f"SELECT id, ingested_at FROM {names.CASSANDRA_KEYSPACE}."
                                 f"{names.CASSANDRA_EVENTS_TABLE} WHERE id IN ?")
        found: dict[int, float] = {}
        results = execute_concurrent_with_args(session, select, [(c,) for c in _chunks(row_ids, chunk)],
                                               concurrency=8, raise_on_first_error=True)
        for ok, rows in results:
            for row in rows:
                if row.ingested_at is not None:
                    found[row.id] = _epoch(row.ingested_at)
        return found
    finally:
        cluster.shutdown()


REDIS_APPLIED_FIELD = "at"     # epoch milliseconds the sink applied the row's last change
REDIS_POSITION_FIELD = "pos"


def redis_applied(env, row_ids: list[int], chunk: int = 2000) -> tuple[dict[int, float], int]:
    """Row id -> applied time from the row fence's ``at`` field; and how many fences lack the field."""
    import redis

    client = redis.Redis.from_url(env["REDIS_URL"])
    found: dict[int, float] = {}
    without_field = 0
    try:
        for part in _chunks(row_ids, chunk):
            pipe = client.pipeline(transaction=False)
            for row_id in part:
                pipe.hmget(f"{names.REDIS_ROW_PREFIX}{row_id}", REDIS_APPLIED_FIELD, REDIS_POSITION_FIELD)
            for row_id, (at, pos) in zip(part, pipe.execute()):
                if at is not None:
                    found[row_id] = float(at) / 1000.0
                elif pos is not None:
                    without_field += 1
    finally:
        client.close()
    return found, without_field


def rest_applied(env, row_ids: list[int], say: Callable[[str], None] = print) -> tuple[dict[int, float], str]:
    """Row id -> ``received_at`` of the row's first event (its insert) at the REST service.

    Pages through GET /v1/events?row_min=&row_max=; a service without that read (the range is not
    echoed back) is asked row by row instead."""
    import requests

    from cdc_platform.delivery.rest_contract import EVENTS_PATH

    url = env["API_URL"].rstrip("/") + EVENTS_PATH
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {env['API_TOKEN']}"
    wanted = set(row_ids)
    found: dict[int, float] = {}

    def keep(events: list[dict]) -> None:
        for event in events:
            row_id = event.get("row_id")
            if row_id in wanted:
                at = datetime.fromisoformat(event["received_at"]).timestamp()
                found[row_id] = min(at, found.get(row_id, at))

    low, high = min(row_ids), max(row_ids)
    page = session.get(url, params={"row_min": low, "row_max": high, "limit": 1000}, timeout=30)
    page.raise_for_status()
    body = page.json()
    if isinstance(body, dict) and "row_min" in body:
        while True:
            events = body["events"]
            keep(events)
            if len(events) < 1000:
                return found, "range"
            last = events[-1]["row_id"]
            low = last + 1 if events[0]["row_id"] == last else last
            page = session.get(url, params={"row_min": low, "row_max": high, "limit": 1000}, timeout=30)
            page.raise_for_status()
            body = page.json()
    say("    rest: this service has no row-range read (restart restapi to load it); asking row by row")
    from concurrent.futures import ThreadPoolExecutor

    def one(row_id: int) -> list[dict]:
        response = session.get(url, params={"row_id": row_id, "limit": 10}, timeout=30)
        response.raise_for_status()
        data = response.json()
        return data["events"] if isinstance(data, dict) else data

    with ThreadPoolExecutor(max_workers=8) as pool:
        for events in pool.map(one, row_ids):
            keep(events)
    return found, "per_row"


# --- what the sink ceilings read ------------------------------------------------------------

def max_source_event_id(env) -> int:
    """The largest id the PostgreSQL events table has handed out (its sequence, or its rows)."""
    import psycopg2

    conn = psycopg2.connect(env["PG_DSN"], application_name="cdc-bench")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {names.PG_EVENTS_TABLE}")
            highest = cur.fetchone()[0]
            cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", (names.PG_EVENTS_TABLE,))
            sequence = cur.fetchone()[0]
            if sequence:
                cur.execute(f"SELECT last_value FROM {sequence}")
                highest = max(highest, cur.fetchone()[0])
        return int(highest)
    finally:
        conn.close()


def cassandra_rows_left(env, row_ids: list[int]) -> int:
    """How many of ``row_ids`` the Cassandra events table still holds."""
    return len(cassandra_applied(env, row_ids))


# Restores the watermark's max_position only if it is still the one the ceiling set.
_RESTORE_MAX_POSITION = """
if redis.call('HGET', KEYS[1], 'max_position') ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'max_position') else
  redis.call('HSET', KEYS[1], 'max_position', ARGV[2]) end
return 1
"""


@contextlib.contextmanager
def _redis(env):
    from cdc_platform import redis_client

    client = redis_client.connect(env["REDIS_URL"])
    try:
        yield client
    finally:
        client.close()


def redis_max_position(env) -> str | None:
    with _redis(env) as client:
        value = client.hget(names.REDIS_WATERMARK, "max_position")
    return None if value is None else value.decode()


def redis_restore_max_position(env, expected: str, previous: str | None) -> bool:
    with _redis(env) as client:
        return bool(client.eval(_RESTORE_MAX_POSITION, 1, names.REDIS_WATERMARK, expected, previous or ""))


def redis_snapshot(env):
    """Every Redis aggregate (cdc_platform.aggregates.read_snapshot)."""
    from cdc_platform.aggregates import read_snapshot

    with _redis(env) as client:
        return read_snapshot(client)


def redis_event_clock_ms(env) -> int | None:
    """engagement_10m's event-time clock (the watermark's max_event_ts_ms)."""
    from cdc_platform.aggregates import read_watermark

    with _redis(env) as client:
        return read_watermark(client).max_event_ts_ms
