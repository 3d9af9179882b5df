"""The job's wiring that needs no services: arguments, settings, sink loading."""
from __future__ import annotations

import json

import pytest

from cdc_platform import names
from cdc_platform.kafka_clients import CLIENT_CONFIG_ENV
from cdc_stream import cassandra_sink, job
from cdc_stream.config import SINKS, JobConfig, SinkSettings

STACK_ENV = {
    "KAFKA_BOOTSTRAP": "kafka:9092", "SPARK_CHECKPOINT_ROOT": "/ckpt", "CASSANDRA_HOST": "cass",
    "CASSANDRA_PORT": "9142", "REDIS_URL": "redis://:s3cret@redis:6379/0", "API_URL": "http://api:8090",
    "API_TOKEN": "t0ken",
}


@pytest.fixture
def stack_environment(monkeypatch):
    for name in ("CASSANDRA_KEYSPACE", "CASSANDRA_SINK_USER", "CASSANDRA_SINK_PASSWORD", "CDC_TRIGGER_SECONDS",
                 "CDC_STARTING_OFFSETS", CLIENT_CONFIG_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in STACK_ENV.items():
        monkeypatch.setenv(name, value)


def config(argv):
    return job.config_from_args(job.parser().parse_args(argv))


def test_defaults_come_from_the_stack_environment(stack_environment):
    cfg = config([])
    assert cfg.sinks == SINKS
    assert (cfg.events_topic, cfg.content_topic) == (names.EVENTS_TOPIC, names.CONTENT_TOPIC)
    assert cfg.settings == SinkSettings(
        bootstrap="kafka:9092", cassandra_host="cass", cassandra_port=9142,
        cassandra_keyspace=names.CASSANDRA_KEYSPACE, redis_url="redis://:s3cret@redis:6379/0",
        api_url="http://api:8090", api_token="t0ken", dlq_topic=names.DLQ_TOPIC,
        quarantine_topic=names.QUARANTINE_TOPIC,
    )
    assert (cfg.starting_offsets, cfg.trigger_seconds) == ("earliest", 0.5)


def test_arguments_override_the_environment(stack_environment):
    cfg = config(["--sinks", "cassandra", "--bootstrap", "b:1", "--cassandra-port", "1", "--trigger-seconds", "2",
                  "--starting-offsets", "latest", "--max-offsets-per-trigger", "0"])
    assert (cfg.sinks, cfg.settings.bootstrap, cfg.settings.cassandra_port) == (("cassandra",), "b:1", 1)
    assert (cfg.trigger_seconds, cfg.starting_offsets, cfg.max_offsets_per_trigger) == (2.0, "latest", None)


SASL_CONNECTION = {"bootstrap.servers": "b1:9093,b2:9093", "security.protocol": "SASL_SSL",
                   "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "cdc", "sasl.password": "kafka-s3cret",
                   "ssl.ca.location": "/etc/kafka/ca.pem"}


def test_the_whole_kafka_connection_comes_from_the_environment(stack_environment, monkeypatch):
    monkeypatch.setenv(CLIENT_CONFIG_ENV, json.dumps(SASL_CONNECTION))
    cfg = config([])
    # The connection's servers win over KAFKA_BOOTSTRAP, which the worker's environment may carry.
    assert cfg.settings.bootstrap == "b1:9093,b2:9093"
    assert cfg.settings.kafka == SASL_CONNECTION
    assert cfg.kafka_options["kafka.bootstrap.servers"] == "b1:9093,b2:9093"
    assert cfg.kafka_options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert "kafka-s3cret" in cfg.kafka_options["kafka.sasl.jaas.config"]
    assert "kafka-s3cret" not in repr(cfg)


def test_bootstrap_alone_still_makes_a_plaintext_kafka(stack_environment):
    cfg = config(["--bootstrap", "k:9092"])
    assert cfg.settings.kafka == {"bootstrap.servers": "k:9092"}
    assert cfg.kafka_options == {"kafka.bootstrap.servers": "k:9092"}


def test_bootstrap_on_the_command_line_overrides_only_the_connections_servers(stack_environment, monkeypatch):
    monkeypatch.setenv(CLIENT_CONFIG_ENV, json.dumps(SASL_CONNECTION))
    cfg = config(["--bootstrap", "other:9093"])
    assert cfg.settings.kafka == {**SASL_CONNECTION, "bootstrap.servers": "other:9093"}


@pytest.mark.parametrize("value, named", [
    (json.dumps({"bootstrap.servers": "b:9093", "sasl.kerberos.keytab": "/k.tab"}), "sasl.kerberos.keytab"),
    ("not json", CLIENT_CONFIG_ENV),
])
def test_a_kafka_connection_the_stream_cannot_honour_stops_it_by_name(stack_environment, monkeypatch, value, named):
    monkeypatch.setenv(CLIENT_CONFIG_ENV, value)
    with pytest.raises(SystemExit, match=named):
        config([])


def test_each_query_has_its_own_checkpoint(stack_environment):
    cfg = config(["--checkpoint-root", "/data/ckpt/"])
    paths = {cfg.checkpoint(query) for query in names.STREAM_QUERIES}
    assert paths == {"/data/ckpt/core", "/data/ckpt/cassandra_sink", "/data/ckpt/redis_sink", "/data/ckpt/rest_sink"}


def test_secrets_stay_out_of_the_logged_settings(stack_environment):
    text = repr(config([]))
    assert "s3cret" not in text and "t0ken" not in text


def test_the_cassandra_sink_logs_in_as_its_role_with_a_password_from_the_environment_only(
        stack_environment, monkeypatch):
    monkeypatch.setenv("CASSANDRA_SINK_USER", "cdc_sink")
    monkeypatch.setenv("CASSANDRA_SINK_PASSWORD", "p4ss")
    settings = config([]).settings
    assert (settings.cassandra_user, settings.cassandra_password) == ("cdc_sink", "p4ss")
    target = cassandra_sink.CassandraTarget.from_settings(settings)
    assert (target.username, target.password) == ("cdc_sink", "p4ss")
    assert "p4ss" not in repr(settings) and "p4ss" not in repr(target)
    assert "--cassandra-password" not in job.parser().format_help()


@pytest.mark.parametrize("argv,missing", [
    (["--sinks", "cassandra,redis"], "--redis-url"),
    (["--sinks", "rest"], "--api-url"),
])
def test_a_selected_sink_needs_its_settings(monkeypatch, stack_environment, argv, missing):
    monkeypatch.delenv(missing.removeprefix("--").upper().replace("-", "_"), raising=False)
    with pytest.raises(SystemExit, match=missing):
        config(argv)


def test_rest_sink_needs_a_token(monkeypatch, stack_environment):
    monkeypatch.delenv("API_TOKEN")
    with pytest.raises(SystemExit, match="--api-token"):
        config(["--sinks", "rest"])
    assert config(["--sinks", "cassandra,redis"]).settings.api_token is None


def test_missing_connection_settings_are_named(monkeypatch):
    for name in (*STACK_ENV, CLIENT_CONFIG_ENV):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit, match="--bootstrap, --checkpoint-root, --cassandra-host"):
        config(["--sinks", "cassandra"])


@pytest.mark.parametrize("sinks", ["cassandra,kafka", "cassandra,cassandra", ","])
def test_bad_sink_lists_are_rejected(stack_environment, sinks):
    with pytest.raises(SystemExit):
        config(["--sinks", sinks])


def test_job_config_validates_directly():
    settings = SinkSettings("b:1", "h", 1)
    with pytest.raises(ValueError):
        JobConfig(settings, "/c", sinks=())
    with pytest.raises(ValueError):
        JobConfig(settings, "/c", trigger_seconds=-1)
    with pytest.raises(ValueError):
        JobConfig(settings, "/c", max_content_wait_seconds=-1)


def test_load_sink_by_name(monkeypatch):
    cassandra = job.load_sink("cassandra")
    assert (cassandra.write_batch, cassandra.reads_content) == (cassandra_sink.write_batch, True)
    assert job.load_sink("redis").reads_content is False
    monkeypatch.setitem(job.SINK_MODULES, "redis", "cdc_stream.no_such_sink")
    with pytest.raises(RuntimeError, match="sink 'redis': cannot import cdc_stream.no_such_sink"):
        job.load_sink("redis")
    monkeypatch.setitem(job.SINK_MODULES, "rest", "cdc_stream.schemas")
    with pytest.raises(RuntimeError, match="has no write_batch"):
        job.load_sink("rest")


def test_cassandra_target_rejects_non_identifiers():
    with pytest.raises(ValueError):
        cassandra_sink.CassandraTarget("h", 1, keyspace="ks; DROP KEYSPACE x")


def test_event_params_bind_upserts_and_deletes_at_the_position():
    from datetime import datetime, timezone
    import uuid

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    row = {"id": 5, "op": "u", "position": 77, "content_id": str(uuid.UUID(int=1)), "user_id": str(uuid.UUID(int=2)),
           "event_type": "play", "event_ts": 1_000_000, "duration_ms": 10, "device": "tv", "raw_payload": "{}",
           "engagement_pct": 0.1}
    is_delete, params = cassandra_sink.event_params(row, now)
    assert not is_delete
    assert params == (5, uuid.UUID(int=1), uuid.UUID(int=2), "play", 1000, 10, "tv", "{}", 0.1, 77, "u", now, 77)
    assert len(params) == len(cassandra_sink.EVENT_COLUMNS) + 1
    assert cassandra_sink.event_params(dict(row, op="d", content_id=None), now) == (True, (77, 5))
