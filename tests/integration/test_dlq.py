"""The durable DLQ on the real Kafka, against the real REST service, and the REST sink in Spark.

Each test uses its own DLQ/parked topics and consumer group, so the platform's real
DLQ is never touched, and its own key prefix, so its faults only hit its own requests.
"""
from __future__ import annotations

from dataclasses import replace

import json
import random
import socket
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from pyspark.sql import Row

from cdc_platform import names, semantics
from cdc_platform.delivery import dlq
from cdc_platform.delivery.rest_client import DeliveryItem, RetryPolicy, deliver, make_session
from cdc_platform.cluster import ClusterSettings
from cdc_platform.provisioning import TOPICS, new_topic_settings
from cdc_platform.delivery.rest_contract import COUNT_PATH, EVENTS_PATH, FAULTS_PATH, HEALTH_PATH
from tests.polling import poll_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(max_attempts=2, base_backoff_s=0.05, max_backoff_s=0.1)




@pytest.fixture(scope="module")
def api(stack_env):
    if "API_URL" not in stack_env:
        pytest.fail("API_URL missing from .stack/env: the restapi service is not part of this stack; run `make up`.")
    url, token = stack_env["API_URL"], stack_env["API_TOKEN"]
    poll_until(lambda: requests.get(url + HEALTH_PATH, timeout=2).ok, 30, "the restapi service")
    auth = {"Authorization": f"Bearer {token}"}
    admin = {"Authorization": f"Bearer {stack_env['API_ADMIN_TOKEN']}"}

    def count(prefix: str) -> int:
        return requests.get(url + COUNT_PATH, params={"prefix": prefix}, headers=auth, timeout=5).json()["count"]

    def event(key: str) -> dict:
        return requests.get(f"{url}{EVENTS_PATH}/{key}", headers=auth, timeout=5).json()

    def set_faults(**config) -> None:
        requests.post(url + FAULTS_PATH, json=config, headers=admin, timeout=5).raise_for_status()

    def clear_faults() -> None:
        requests.delete(url + FAULTS_PATH, headers=admin, timeout=5).raise_for_status()

    return SimpleNamespace(url=url, token=token, count=count, event=event, set_faults=set_faults,
                           clear_faults=clear_faults)


@pytest.fixture()
def faults(api):
    yield api
    api.clear_faults()


@pytest.fixture()
def bootstrap(stack_env) -> str:
    return stack_env["KAFKA_BOOTSTRAP"]


@pytest.fixture()
def queue(bootstrap, tmp_path):
    """A private DLQ: topics, consumer group, audit log; the topics are deleted afterwards."""
    run = uuid.uuid4().hex[:10]
    ns = SimpleNamespace(dlq=f"it-dlq-{run}", parked=f"it-parked-{run}", group=f"it-dlq-reprocess-{run}",
                         audit=tmp_path / "dlq_audit.log", prefix=f"it-{run}-")
    yield ns
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    doomed = [t for t in (ns.dlq, ns.parked) if t in existing]
    for future in (admin.delete_topics(doomed, operation_timeout=30).values() if doomed else ()):
        future.result(30)
    groups = {g.group_id for g in admin.list_consumer_groups(request_timeout=10).result(10).valid}
    if ns.group in groups:
        admin.delete_consumer_groups([ns.group], request_timeout=10)[ns.group].result(10)


def reprocess(api, bootstrap, queue, **kwargs) -> dlq.ReprocessReport:
    kwargs.setdefault("base_backoff_s", 0)
    return dlq.reprocess(bootstrap, api.url, api.token, dlq_topic=queue.dlq, parked_topic=queue.parked,
                         group_id=queue.group, policy=FAST, audit_log=queue.audit, deadline_s=60, **kwargs)


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[dlq.DlqEntry]:
    """Every entry of ``topic``, read from the start without joining a group."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "it-dlq-reader", "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    entries: list[dlq.DlqEntry] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                assert msg.error() is None, msg.error()
                entry = dlq.DlqEntry.decode(msg.value())
                assert msg.key().decode() == entry.idempotency_key
                entries.append(entry)
            if len(entries) >= expected:
                # Give a surplus (a duplicate) the chance to show up before concluding.
                for msg in consumer.consume(num_messages=100, timeout=1.0):
                    entries.append(dlq.DlqEntry.decode(msg.value()))
                return entries
    finally:
        consumer.close()
    raise AssertionError(f"{topic}: {len(entries)} entries after {timeout:.0f}s, expected {expected}")


def items(prefix: str, n: int) -> list[DeliveryItem]:
    return [DeliveryItem(f"{prefix}{i}", {"id": i, "position": 5000 + i, "op": "c", "device": "tv"})
            for i in range(n)]


def dead_letter(bootstrap, queue, failures, now=None, due_at=None) -> None:
    writer = dlq.DlqWriter(bootstrap, audit_log=queue.audit)
    for entry in dlq.entries_from_failures(failures, now=now):
        writer.send(queue.dlq, entry if due_at is None else replace(entry, next_attempt_at=due_at))
    assert writer.flush() == len(failures)


def test_failed_posts_go_to_the_dlq_and_reprocess_delivers_each_exactly_once(faults, bootstrap, queue):
    n = 12
    dlq.ensure_dlq_topics(bootstrap, queue.dlq, queue.parked)
    faults.set_faults(status=503, key_prefix=queue.prefix)
    result = deliver(make_session(), faults.url, faults.token, items(queue.prefix, n), batch_size=5, policy=FAST)
    assert result.delivered == [] and len(result.failed) == n
    dead_letter(bootstrap, queue, result.failed)

    entries = read_topic(bootstrap, queue.dlq, n)
    assert len(entries) == n
    assert {e.idempotency_key for e in entries} == {f"{queue.prefix}{i}" for i in range(n)}
    assert all(e.attempts == 1 and e.error.startswith("HTTP 503") and e.source == "rest_sink" for e in entries)
    assert {e.event["device"] for e in entries} == {"tv"}
    assert dlq.dlq_depth(bootstrap, queue.dlq, queue.group) == n

    still_down = reprocess(faults, bootstrap, queue)
    assert (still_down.delivered, still_down.requeued, still_down.parked) == (0, n, 0)
    assert dlq.dlq_depth(bootstrap, queue.dlq, queue.group) == n  # the requeued copies wait

    faults.clear_faults()
    recovered = reprocess(faults, bootstrap, queue)
    assert (recovered.consumed, recovered.delivered, recovered.requeued, recovered.parked) == (n, n, 0, 0)
    assert faults.count(queue.prefix) == n
    assert {faults.event(f"{queue.prefix}{i}")["deliveries"] for i in range(n)} == {1}
    assert dlq.dlq_depth(bootstrap, queue.dlq, queue.group) == 0

    assert reprocess(faults, bootstrap, queue).consumed == 0
    history = read_topic(bootstrap, queue.dlq, 2 * n)
    assert sorted(e.attempts for e in history) == [1] * n + [2] * n
    assert len(queue.audit.read_text().splitlines()) == 2 * n


def test_entries_not_yet_due_are_passed_on_unchanged(api, bootstrap, queue):
    dlq.ensure_dlq_topics(bootstrap, queue.dlq, queue.parked)
    failures = [dlq.FailedItem(i, "HTTP 503: down", 3, True) for i in items(queue.prefix, 4)]
    now = datetime.now(timezone.utc)
    dead_letter(bootstrap, queue, failures, now=now, due_at=now + timedelta(hours=1))

    early = reprocess(api, bootstrap, queue, now=now + timedelta(minutes=5))
    assert (early.skipped_not_due, early.delivered, early.requeued) == (4, 0, 0)
    assert api.count(queue.prefix) == 0
    assert dlq.dlq_depth(bootstrap, queue.dlq, queue.group) == 4
    originals_and_copies = sorted(e.encode() for e in read_topic(bootstrap, queue.dlq, 8))
    assert originals_and_copies[0::2] == originals_and_copies[1::2]  # each entry twice, byte for byte

    due = reprocess(api, bootstrap, queue, now=now + timedelta(hours=2))
    assert (due.delivered, due.skipped_not_due) == (4, 0)
    assert api.count(queue.prefix) == 4


def test_a_poison_entry_is_parked_after_max_attempts(api, bootstrap, queue):
    dlq.ensure_dlq_topics(bootstrap, queue.dlq, queue.parked)
    good = items(queue.prefix, 3)
    poison = DeliveryItem(f"{queue.prefix}poison", "not a JSON object: the service answers 422")
    dead_letter(bootstrap, queue, [dlq.FailedItem(i, "HTTP 503: down", 2, True) for i in [*good, poison]])

    first = reprocess(api, bootstrap, queue, max_attempts=3)
    assert (first.delivered, first.requeued, first.parked) == (3, 1, 0)
    second = reprocess(api, bootstrap, queue, max_attempts=3)
    assert (second.delivered, second.requeued, second.parked) == (0, 0, 1)
    assert second.parked_keys == [poison.idempotency_key]

    [parked] = read_topic(bootstrap, queue.parked, 1)
    assert parked.idempotency_key == poison.idempotency_key
    assert parked.event == poison.event
    assert parked.attempts == 3
    assert "HTTP 422" in parked.error and "non-retryable" in parked.error
    assert dlq.dlq_depth(bootstrap, queue.dlq, queue.group) == 0
    assert dlq.dlq_depth(bootstrap, queue.parked, queue.group) == 1
    assert api.count(queue.prefix) == 3
    assert reprocess(api, bootstrap, queue, max_attempts=3).consumed == 0


def test_parked_entries_are_replayed_once_the_api_is_healthy_and_the_others_stay_parked(faults, bootstrap, queue):
    dlq.ensure_dlq_topics(bootstrap, queue.dlq, queue.parked)
    faults.set_faults(status=503, key_prefix=queue.prefix)
    entries = items(queue.prefix, 5)
    dead_letter(bootstrap, queue, [dlq.FailedItem(i, "HTTP 503: down", 1, True) for i in entries])
    assert reprocess(faults, bootstrap, queue, max_attempts=2).parked == 5
    assert dlq.dlq_depth(bootstrap, queue.parked, queue.group) == 5

    faults.clear_faults()
    chosen = {e.idempotency_key for e in entries[:3]}

    def replay(keys=None) -> dlq.ReplayReport:
        return dlq.replay_parked(bootstrap, keys, dlq_topic=queue.dlq, parked_topic=queue.parked,
                                 group_id=queue.group, audit_log=queue.audit, deadline_s=60)

    first = replay(chosen)
    assert (first.consumed, first.requeued, first.kept) == (5, 3, 2)
    assert set(first.requeued_keys) == chosen
    assert dlq.dlq_depth(bootstrap, queue.parked, queue.group) == 2
    assert reprocess(faults, bootstrap, queue, max_attempts=2).delivered == 3
    assert faults.count(queue.prefix) == 3

    rest = replay()
    assert (rest.consumed, rest.requeued, rest.kept) == (2, 2, 0)
    assert reprocess(faults, bootstrap, queue, max_attempts=2).delivered == 2
    assert {faults.event(e.idempotency_key)["deliveries"] for e in entries} == {1}
    assert dlq.dlq_depth(bootstrap, queue.parked, queue.group) == 0
    assert replay().consumed == 0


def test_an_undecodable_message_is_parked_with_its_reason(api, bootstrap, queue):
    dlq.ensure_dlq_topics(bootstrap, queue.dlq, queue.parked)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(queue.dlq, key=b"garbage-key", value=b"{not json")
    assert producer.flush(10) == 0

    report = reprocess(api, bootstrap, queue)
    assert (report.consumed, report.parked, report.parked_keys) == (1, 1, ["garbage-key"])
    [parked] = read_topic(bootstrap, queue.parked, 1)
    assert parked.error.startswith("undecodable DLQ entry")
    assert parked.event == {"undecodable_dlq_message": "{not json"}


def test_max_entries_bounds_a_round_and_the_rest_waits(api, bootstrap, queue):
    dlq.ensure_dlq_topics(bootstrap, queue.dlq, queue.parked)
    dead_letter(bootstrap, queue, [dlq.FailedItem(i, "HTTP 503: down", 1, True) for i in items(queue.prefix, 7)])
    assert reprocess(api, bootstrap, queue, max_entries=3).delivered == 3
    assert dlq.dlq_depth(bootstrap, queue.dlq, queue.group) == 4
    assert reprocess(api, bootstrap, queue).delivered == 4
    assert api.count(queue.prefix) == 7


def test_ensure_dlq_topics_is_idempotent(bootstrap, queue):
    assert sorted(dlq.ensure_dlq_topics(bootstrap, queue.dlq, queue.parked)) == sorted([queue.dlq, queue.parked])
    assert dlq.ensure_dlq_topics(bootstrap, queue.dlq, queue.parked) == []
    specs = {spec.name: spec for spec in TOPICS}
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    settings = ClusterSettings.from_env()
    for topic, spec in ((queue.dlq, specs[names.DLQ_TOPIC]), (queue.parked, specs[names.PARKED_TOPIC])):
        assert len(metadata[topic].partitions) == new_topic_settings(spec, settings)["num_partitions"]


# --- the REST sink in Spark ---------------------------------------------------------------

@pytest.fixture()
def sink_spark(spark, queue):
    """The sink runs in Python workers: they need this venv's interpreter (confluent-kafka,
    requests), the project on their path, and the test's audit log. All three are taken
    from the SparkContext each time a job starts, so they can be set for these tests only."""
    from cdc_platform.delivery.dlq import AUDIT_LOG_ENV

    context = spark.sparkContext
    env = context.environment
    saved_exec = context.pythonExec
    saved = {k: env.get(k) for k in ("PYTHONPATH", AUDIT_LOG_ENV)}
    context.pythonExec = sys.executable
    env["PYTHONPATH"] = ":".join(filter(None, [str(REPO / "include"), str(REPO / "spark_jobs"), saved["PYTHONPATH"]]))
    env[AUDIT_LOG_ENV] = str(queue.audit)
    yield spark
    context.pythonExec = saved_exec
    for key, value in saved.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value


def change_rows(spark, row_id: int, n: int):
    """n normalized change records (topic, value) of one row, as the core query writes them."""
    from cdc_stream import change_log, schemas

    base = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    rows = [Row(id=row_id, op="u", position=10_000 + i, source_ts_ms=1_767_268_800_000 + i,
                content_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()), event_type="play",
                event_ts=base + timedelta(seconds=i), duration_ms=1000 * i, device="mobile",
                raw_payload='{"k": 1}', length_seconds=60, engagement_pct=semantics.engagement_pct(1000 * i, 60))
            for i in range(n)]
    return change_log.change_records(spark.createDataFrame(rows, schema=schemas.CHANGE).repartition(2), "changes")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_rest_sink_delivers_and_a_replayed_batch_is_harmless(sink_spark, api, bootstrap, queue):
    from cdc_stream.rest_sink import write_batch

    row_id = random.randrange(2_000_000_000, 2**31 - 1)
    df = change_rows(sink_spark, row_id, 6)
    settings = SimpleNamespace(api_url=api.url, api_token=api.token, kafka=bootstrap)
    stats = write_batch(df, 1, settings, dlq_topic=queue.dlq, parked_topic=queue.parked)
    assert (stats.rows, stats.delivered, stats.dead_lettered) == (6, 6, 0)
    replay = write_batch(df, 1, settings, dlq_topic=queue.dlq, parked_topic=queue.parked)
    assert replay.delivered == 6
    key = semantics.idempotency_key(row_id, 10_003)
    assert api.count(f"{row_id}:") == 6
    stored = api.event(key)
    assert stored["deliveries"] == 2
    assert stored["event"]["event_ts"] == "2026-01-01T12:00:03+00:00"
    assert stored["event"]["engagement_pct"] == pytest.approx(0.05)
    assert dlq.dlq_depth(bootstrap, queue.dlq, queue.group) == 0


def test_rest_sink_sends_everything_to_the_dlq_when_the_api_is_dead(sink_spark, api, bootstrap, queue):
    from cdc_stream.rest_sink import write_batch

    row_id = random.randrange(2_000_000_000, 2**31 - 1)
    df = change_rows(sink_spark, row_id, 5)
    dead = SimpleNamespace(api_url=f"http://127.0.0.1:{_free_port()}", api_token=api.token, kafka=bootstrap)
    stats = write_batch(df, 7, dead, dlq_topic=queue.dlq, parked_topic=queue.parked)
    assert (stats.rows, stats.delivered, stats.dead_lettered) == (5, 0, 5)

    entries = read_topic(bootstrap, queue.dlq, 5)
    assert sorted(e.idempotency_key for e in entries) == sorted(
        semantics.idempotency_key(row_id, 10_000 + i) for i in range(5))
    assert all("connection error" in e.error and e.attempts == 1 for e in entries)
    assert {e.event["event_ts"] for e in entries} == {f"2026-01-01T12:00:0{i}+00:00" for i in range(5)}
    assert len(queue.audit.read_text().splitlines()) == 5

    report = reprocess(api, bootstrap, queue, now=datetime.now(timezone.utc) + timedelta(hours=1))
    assert report.delivered == 5
    assert api.count(f"{row_id}:") == 5


def test_rest_sink_parks_a_change_it_cannot_build_and_delivers_the_others(sink_spark, api, bootstrap, queue):
    """A change with a timestamp no event can hold (written by an older stream version, before
    such values were quarantined) is parked with its reason; it never halts the sink."""
    from cdc_stream import change_log
    from cdc_stream.rest_sink import write_batch

    row_id = random.randrange(2_000_000_000, 2**31 - 1)
    good = change_rows(sink_spark, row_id, 3).select("topic", "value")
    bad = change_log.decode(good.first().value) | {"id": row_id + 1, "event_ts": -9223372036832400000}
    df = good.union(sink_spark.createDataFrame([("changes", json.dumps(bad))], good.schema))
    settings = SimpleNamespace(api_url=api.url, api_token=api.token, kafka=bootstrap)
    stats = write_batch(df, 1, settings, dlq_topic=queue.dlq, parked_topic=queue.parked)
    assert (stats.rows, stats.delivered, stats.parked) == (4, 3, 1)
    [parked] = read_topic(bootstrap, queue.parked, 1)
    assert parked.idempotency_key == semantics.idempotency_key(row_id + 1, bad["position"])
    assert "cannot be built" in parked.error and "OverflowError" in parked.error
