"""The Cassandra sink against the running Cassandra, and the stream's entry point end to end.

Everything is written to a dedicated keyspace built from include/cql/engagement_schema.cql, so
these tests never touch the live ``engagement`` keyspace that reconciliation compares with Redis.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from cdc_platform import names, provisioning
from cdc_stream import cassandra_sink, change_log, schemas
from cdc_stream import quarantine as Q
from tests.polling import poll_until
from tests.spark_packages import ship_packages

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CQL_SCHEMA = REPO / "include" / "cql" / "engagement_schema.cql"
ENTRY_POINT = REPO / "spark_jobs" / "spark_cdc_multi_sink.py"
TEST_KEYSPACE = "engagement_it_sink"
EVENT_TS = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def schema_statements(keyspace: str) -> list[str]:
    """The project's CQL schema, retargeted to ``keyspace``."""
    text = "\n".join(line for line in CQL_SCHEMA.read_text().splitlines() if not line.strip().startswith("--"))
    ks = re.escape(names.CASSANDRA_KEYSPACE)
    text = re.sub(rf"(KEYSPACE IF NOT EXISTS\s+){ks}\b", rf"\g<1>{keyspace}", text)
    text = re.sub(rf"\b{ks}\.", f"{keyspace}.", text)
    return [statement.strip() for statement in text.split(";") if statement.strip()]


@pytest.fixture(scope="module")
def keyspace(cassandra_session):
    for statement in schema_statements(TEST_KEYSPACE):
        cassandra_session.execute(statement, timeout=60)
    provisioning.grant_sink_role(cassandra_session, TEST_KEYSPACE)
    return TEST_KEYSPACE


@pytest.fixture(scope="module")
def spark(spark, tmp_path_factory):
    """The shared session; its Python workers run this interpreter (it has cassandra-driver)
    and get the packages through the --py-files archive, as in production."""
    context = spark.sparkContext
    saved_exec = context.pythonExec
    context.pythonExec = sys.executable
    ship_packages(context, tmp_path_factory.mktemp("py_files"))
    yield spark
    context.pythonExec = saved_exec


@pytest.fixture(scope="module")
def target(stack_env, keyspace):
    return cassandra_sink.CassandraTarget(stack_env["CASSANDRA_HOST"], int(stack_env["CASSANDRA_PORT"]), keyspace,
                                          username=stack_env["CASSANDRA_SINK_USER"],
                                          password=stack_env["CASSANDRA_SINK_PASSWORD"])


@pytest.fixture
def row_id():
    # Unique per test and run: the keyspace outlives the session.
    return random.randint(1_000_000, 2_000_000_000)


def change(row_id: int, op: str, position: int, *, duration_ms: int = 30_000, content_id: str | None = None):
    return (row_id, op, position, 1_767_268_800_000, content_id or str(uuid.UUID(int=1)), str(uuid.UUID(int=2)),
            "play", EVENT_TS, duration_ms, "mobile", '{"n": 1}', 60, duration_ms / 60_000)


def write_changes(spark, target, *rows):
    records = change_log.change_records(spark.createDataFrame(list(rows), schemas.CHANGE), "event-changes")
    cassandra_sink.write_records(records, target, content_topic="content-changes")


def stored_event(session, keyspace, row_id):
    return session.execute(f"SELECT * FROM {keyspace}.engagement_events WHERE id = %s", (row_id,)).one()


def test_schema_statements_retarget_every_table():
    statements = schema_statements("ks_x")
    assert statements and all(re.search(r"\bengagement\.", s) is None for s in statements)
    assert sum("ks_x." in s for s in statements) == 2


def test_change_is_stored_with_its_position(spark, cassandra_session, target, row_id):
    write_changes(spark, target, change(row_id, "c", 100))
    stored = stored_event(cassandra_session, target.keyspace, row_id)
    assert (stored.source_lsn, stored.source_op, stored.duration_ms) == (100, "c", 30_000)
    assert stored.content_id == uuid.UUID(int=1) and stored.user_id == uuid.UUID(int=2)
    assert stored.event_ts.replace(tzinfo=timezone.utc) == EVENT_TS
    assert stored.engagement_pct == pytest.approx(0.5)
    assert (stored.device, stored.raw_payload, stored.event_type) == ("mobile", '{"n": 1}', "play")
    assert stored.ingested_at is not None
    writetime = cassandra_session.execute(
        f"SELECT WRITETIME(duration_ms) AS wt FROM {target.keyspace}.engagement_events WHERE id = %s",
        (row_id,)).one().wt
    assert writetime == 100


def test_replayed_older_change_does_not_overwrite_newer(spark, cassandra_session, target, row_id):
    write_changes(spark, target, change(row_id, "c", 100, duration_ms=1_000))
    write_changes(spark, target, change(row_id, "u", 200, duration_ms=2_000))
    write_changes(spark, target, change(row_id, "c", 100, duration_ms=1_000), change(row_id, "u", 150, duration_ms=9))
    stored = stored_event(cassandra_session, target.keyspace, row_id)
    assert (stored.source_lsn, stored.source_op, stored.duration_ms) == (200, "u", 2_000)


def test_out_of_order_changes_in_one_batch_resolve_by_position(spark, cassandra_session, target, row_id):
    write_changes(spark, target, change(row_id, "u", 300, duration_ms=3), change(row_id, "c", 100, duration_ms=1),
                  change(row_id, "u", 200, duration_ms=2))
    assert stored_event(cassandra_session, target.keyspace, row_id).duration_ms == 3


def test_delete_then_replayed_insert_does_not_resurrect(spark, cassandra_session, target, row_id):
    write_changes(spark, target, change(row_id, "c", 100), change(row_id, "u", 200))
    write_changes(spark, target, change(row_id, "d", 300))
    assert stored_event(cassandra_session, target.keyspace, row_id) is None
    write_changes(spark, target, change(row_id, "c", 100), change(row_id, "u", 200))
    assert stored_event(cassandra_session, target.keyspace, row_id) is None
    # Only a genuinely newer change (a later re-insert of the id) brings the row back.
    write_changes(spark, target, change(row_id, "c", 400, duration_ms=4))
    assert stored_event(cassandra_session, target.keyspace, row_id).duration_ms == 4


def content_change(content_id: str, op: str, position: int, length_seconds: int | None):
    return (content_id, op, position, "slug", "Title", "video", length_seconds,
            datetime(2025, 12, 1, tzinfo=timezone.utc))


def lookup_length(session, target, content_id):
    rows = session.execute(f"SELECT length_seconds FROM {target.keyspace}.content WHERE id = %s",
                           (uuid.UUID(content_id),))
    return [r.length_seconds for r in rows]


def test_content_upsert_replay_and_delete(spark, cassandra_session, target):
    content_id = str(uuid.uuid4())

    def write(*rows):
        records = change_log.content_change_records(spark.createDataFrame(list(rows), schemas.CONTENT_CHANGE),
                                                    "content-changes")
        cassandra_sink.write_records(records, target, content_topic="content-changes")

    write(content_change(content_id, "c", 10, 60))
    assert lookup_length(cassandra_session, target, content_id) == [60]
    write(content_change(content_id, "u", 20, 90))
    write(content_change(content_id, "c", 10, 60))
    stored = cassandra_session.execute(f"SELECT * FROM {target.keyspace}.content WHERE id = %s",
                                       (uuid.UUID(content_id),)).one()
    assert (stored.length_seconds, stored.source_lsn, stored.slug) == (90, 20, "slug")
    assert stored.publish_ts.replace(tzinfo=timezone.utc) == datetime(2025, 12, 1, tzinfo=timezone.utc)
    assert lookup_length(cassandra_session, target, content_id) == [90]
    write(content_change(content_id, "d", 30, 90))
    write(content_change(content_id, "u", 20, 90))
    assert lookup_length(cassandra_session, target, content_id) == []


def test_unprovisioned_table_fails_clearly(spark, stack_env):
    missing = cassandra_sink.CassandraTarget(stack_env["CASSANDRA_HOST"], int(stack_env["CASSANDRA_PORT"]),
                                             TEST_KEYSPACE, events_table="no_such_table",
                                             username=stack_env["CASSANDRA_SINK_USER"],
                                             password=stack_env["CASSANDRA_SINK_PASSWORD"])
    with pytest.raises(Exception, match="schema provisioned"):
        write_changes(spark, missing, change(1, "c", 1))


def _spark_submit(stack_env) -> str:
    return stack_env.get("SPARK_SUBMIT") or str(Path(sys.executable).with_name("spark-submit"))


@pytest.fixture
def stream_topics(stack_env):
    from confluent_kafka.admin import AdminClient, NewTopic

    suffix = uuid.uuid4().hex[:8]
    topics = {name: f"it-cdc-{name}-{suffix}"
              for name in ("events", "content", "quarantine", "event-changes", "content-changes", "pending")}
    admin = AdminClient({"bootstrap.servers": stack_env["KAFKA_BOOTSTRAP"]})
    partitions = {"events": 2, "event-changes": 2}
    # The stream creates its own output topics when missing; the fixture creates them to delete them after.
    futures = admin.create_topics([NewTopic(t, partitions.get(k, 1), 1) for k, t in topics.items()])
    for future in futures.values():
        future.result(timeout=30)
    yield topics
    for future in admin.delete_topics(list(topics.values())).values():
        future.result(timeout=30)


def _produce(bootstrap: str, topic: str, messages) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in messages:
        producer.produce(topic, key=None if key is None else json.dumps(key),
                         value=None if value is None else (value if isinstance(value, str) else json.dumps(value)))
    assert producer.flush(30) == 0


def _envelope(op, row, lsn, table):
    image = {"before": row if op == "d" else None, "after": None if op == "d" else row}
    return {**image, "source": {"lsn": lsn, "ts_ms": 1_767_268_800_000, "table": table, "snapshot": "false"},
            "op": op, "ts_ms": 1_767_268_800_001}


def _event(row_id, content_id, duration_ms):
    return {"id": row_id, "content_id": content_id, "user_id": str(uuid.uuid4()), "event_type": " Play ",
            "event_ts": 1_767_268_800_000_000, "duration_ms": duration_ms, "device": "iPad",
            "raw_payload": '{"k": "v"}'}


def _content(content_id, length_seconds):
    return {"id": content_id, "slug": "s", "title": "T", "content_type": "video",
            "length_seconds": length_seconds, "publish_ts": 1_764_547_200_000_000}


def _consume_all(bootstrap: str, topic: str, timeout: float = 10.0) -> list[dict]:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"it-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            values.append(json.loads(message.value()))
    consumer.close()
    return values


@pytest.mark.slow
def test_entry_point_streams_into_cassandra(stack_env, cassandra_session, keyspace, stream_topics, tmp_path):
    from cdc_platform.packaging import build_py_files

    bootstrap = stack_env["KAFKA_BOOTSTRAP"]
    content_a, content_b = str(uuid.uuid4()), str(uuid.uuid4())
    base = random.randint(1_000_000, 2_000_000_000)
    ids = {"kept": base, "updated": base + 1, "deleted": base + 2, "late_content": base + 3}

    _produce(bootstrap, stream_topics["content"], [({"id": content_a}, _envelope("c", _content(content_a, 100), 10, "content"))])
    _produce(bootstrap, stream_topics["events"], [
        ({"id": ids["kept"]}, _envelope("c", _event(ids["kept"], content_a, 50_000), 20, "engagement_events")),
        ({"id": ids["updated"]}, _envelope("c", _event(ids["updated"], content_a, 10_000), 21, "engagement_events")),
        ({"id": ids["updated"]}, _envelope("u", _event(ids["updated"], content_a, 20_000), 22, "engagement_events")),
        ({"id": ids["deleted"]}, _envelope("c", _event(ids["deleted"], content_a, 1_000), 23, "engagement_events")),
        ({"id": ids["deleted"]}, _envelope("d", _event(ids["deleted"], content_a, 1_000), 24, "engagement_events")),
        ({"id": ids["deleted"]}, None),
        ({"id": 0}, "this is not json"),
    ])

    checkpoints = tmp_path / "checkpoints"
    py_files = build_py_files(tmp_path / "build")
    env = dict(os.environ, **{k: v for k, v in stack_env.items()})
    env.pop("PYTHONPATH", None)  # the packages must reach Spark through --py-files
    env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    command = [
        _spark_submit(stack_env), "--master", "local[2]", "--jars", stack_env["SPARK_KAFKA_JARS"],
        "--py-files", str(py_files), "--conf", "spark.ui.enabled=false",
        "--conf", "spark.sql.shuffle.partitions=2",
        str(ENTRY_POINT), "--sinks", "cassandra", "--checkpoint-root", str(checkpoints),
        "--trigger-seconds", "2", "--cassandra-keyspace", keyspace,
        "--events-topic", stream_topics["events"], "--content-topic", stream_topics["content"],
        "--quarantine-topic", stream_topics["quarantine"], "--event-changes-topic", stream_topics["event-changes"],
        "--content-changes-topic", stream_topics["content-changes"], "--pending-topic", stream_topics["pending"],
    ]
    log_path = tmp_path / "job.log"
    with open(log_path, "w") as log:
        job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                               start_new_session=True)
    try:
        def stored(row_id):
            return stored_event(cassandra_session, keyspace, row_id)

        def first_batch_landed():
            assert job.poll() is None, f"job exited early:\n{log_path.read_text()[-4000:]}"
            return stored(ids["kept"]) is not None and stored(ids["updated"]) is not None

        poll_until(first_batch_landed, timeout=180, interval=2, what="the first changes in Cassandra")
        assert stored(ids["kept"]).engagement_pct == pytest.approx(0.5)
        assert (stored(ids["kept"]).event_type, stored(ids["kept"]).device) == ("play", "tablet")
        assert (stored(ids["updated"]).duration_ms, stored(ids["updated"]).source_lsn) == (20_000, 22)
        assert stored(ids["deleted"]) is None

        # Content created while the job runs enriches the next events: no restart needed.
        _produce(bootstrap, stream_topics["content"], [({"id": content_b}, _envelope("c", _content(content_b, 40), 30, "content"))])
        _produce(bootstrap, stream_topics["events"], [
            ({"id": ids["late_content"]}, _envelope("c", _event(ids["late_content"], content_b, 10_000), 31, "engagement_events")),
        ])
        late = poll_until(lambda: stored(ids["late_content"]), timeout=90, interval=2, what="the late-content event")
        assert late.engagement_pct == pytest.approx(0.25)

        quarantined = poll_until(lambda: _consume_all(bootstrap, stream_topics["quarantine"], timeout=3),
                                 timeout=60, interval=1.0, what="the quarantine record")
        assert [(q["reason"], q["value"], q["topic"]) for q in quarantined] == [
            (Q.UNPARSEABLE_JSON, "this is not json", stream_topics["events"])]

        core = json.loads((checkpoints / "_progress" / "core.json").read_text())
        assert core["quarantined_total"] == {Q.UNPARSEABLE_JSON: 1} and core["waiting"] == 0
        # One hop: the core query wrote Cassandra itself; no catch-up query was needed.
        assert core["sinks"]["cassandra"]["ok"] and core["behind"] == []
        assert (checkpoints / "core" / "offsets").is_dir() and not (checkpoints / "cassandra_sink").exists()
    finally:
        _stop(job)
    assert job.returncode == 0, log_path.read_text()[-4000:]
    assert "stopping query cdc-core" in log_path.read_text()


def _stop(job: subprocess.Popen) -> None:
    """SIGTERM the Python driver (spark-submit's child), as a supervisor would; kill on timeout."""
    import psutil

    if job.poll() is not None:
        return
    def is_driver(process) -> bool:
        try:
            return any(ENTRY_POINT.name in part for part in process.cmdline())
        except psutil.Error:  # exited meanwhile, or a zombie
            return False

    drivers = [p for p in psutil.Process(job.pid).children(recursive=True) if is_driver(p)]
    for driver in drivers or [psutil.Process(job.pid)]:
        driver.send_signal(signal.SIGTERM)
    try:
        job.wait(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
