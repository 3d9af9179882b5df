"""The cluster-shaped settings: defaults for one machine, each overridable, each reaching what it configures."""
import json

import pytest

from cdc_platform import connector_config, provisioning
from cdc_platform.cluster import ClusterSettings, ClusterSettingsError

CLUSTER_ENV = {
    "CDC_KAFKA_REPLICATION_FACTOR": "3",
    "CDC_KAFKA_EVENT_PARTITIONS": "12",
    "CDC_CASSANDRA_REPLICATION": json.dumps({"class": "NetworkTopologyStrategy", "dc1": 3, "dc2": 3}),
    "CDC_CASSANDRA_CONSISTENCY": "EACH_QUORUM",
    "CDC_SPARK_EXECUTOR_MEMORY": "4g",
    "CDC_SPARK_EXECUTOR_CORES": "4",
    "CDC_SPARK_TOTAL_EXECUTOR_CORES": "12",
}


def test_the_defaults_are_the_embedded_stacks():
    settings = ClusterSettings.from_env({})
    assert settings == ClusterSettings()
    assert settings.kafka_replication_factor == 1 and settings.kafka_event_partitions == 3
    assert settings.cql_replication() == "{'class': 'SimpleStrategy', 'replication_factor': '1'}"
    assert settings.topic_config() == {"min.insync.replicas": "1"}
    assert settings.spark_submit_resources() == {}


def test_topics_follow_the_replication_factor_and_event_partitions():
    settings = ClusterSettings.from_env(CLUSTER_ENV)
    by_name = {t.name: provisioning.new_topic_settings(t, settings) for t in provisioning.TOPICS}
    events = by_name["engagement_project1.public.engagement_events"]
    assert events["num_partitions"] == 12 and events["replication_factor"] == 3
    assert events["config"]["min.insync.replicas"] == "2"
    assert by_name["engagement_project1.public.content"]["num_partitions"] == 1
    assert all(t["replication_factor"] == 3 for t in by_name.values())


def test_the_keyspace_is_replicated_as_configured():
    statements = provisioning.cassandra_statements(ClusterSettings.from_env(CLUSTER_ENV))
    keyspace = [s for s in statements if s.upper().startswith("CREATE KEYSPACE")]
    assert len(keyspace) == 1
    assert "{'class': 'NetworkTopologyStrategy', 'dc1': '3', 'dc2': '3'}" in keyspace[0]
    assert "SimpleStrategy" not in keyspace[0]


def test_the_connector_creates_its_topics_with_the_same_replication_and_partitions():
    config = connector_config.render("pg", 5432, "cdc", "${file:/s:k}", settings=ClusterSettings.from_env(CLUSTER_ENV))
    assert config["topic.creation.default.replication.factor"] == "3"
    assert config["topic.creation.default.partitions"] == "12"


def test_spark_resources_and_the_sinks_consistency_reach_the_submission(monkeypatch):
    settings = ClusterSettings.from_env(CLUSTER_ENV)
    assert settings.spark_submit_resources() == {"executor_memory": "4g", "executor_cores": 4,
                                                  "total_executor_cores": 12}
    assert settings.cassandra_consistency == "EACH_QUORUM"


@pytest.mark.parametrize("key, value, message", [
    ("CDC_KAFKA_REPLICATION_FACTOR", "0", "at least 1"),
    ("CDC_KAFKA_EVENT_PARTITIONS", "many", "whole number"),
    ("CDC_CASSANDRA_CONSISTENCY", "MOSTLY", "one of"),
    ("CDC_CASSANDRA_REPLICATION", "{not json", "not JSON"),
    ("CDC_CASSANDRA_REPLICATION", '{"class": "SimpleStrategy"}', "replication_factor"),
    ("CDC_CASSANDRA_REPLICATION", '{"class": "EverywhereStrategy", "replication_factor": 1}', "class"),
])
def test_a_wrong_setting_is_refused_with_its_name(key, value, message):
    with pytest.raises(ClusterSettingsError, match=message) as error:
        ClusterSettings.from_env({key: value})
    assert key in str(error.value)


def test_the_local_stack_passes_its_cluster_settings_to_airflow(tmp_path):
    from cdc_local.stack import envfile, secrets
    from cdc_local.stack.config import StackConfig

    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_CASSANDRA_CONSISTENCY": "ONE"})
    values = envfile.build(cfg, secrets.load_or_create(cfg.secrets))
    assert values["CDC_CASSANDRA_CONSISTENCY"] == "ONE"
    assert "CDC_KAFKA_REPLICATION_FACTOR" not in values
    with pytest.raises(SystemExit, match="CDC_KAFKA_REPLICATION_FACTOR"):
        StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_KAFKA_REPLICATION_FACTOR": "x"})


def test_the_stream_operator_submits_with_the_cluster_settings(monkeypatch):
    from cdc_platform.operators.stream import CdcStreamSubmitOperator, stream_submission
    from tests.unit.operators.test_stream import CONNECTIONS

    for conn_id, conn in CONNECTIONS.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    monkeypatch.setenv("CDC_CASSANDRA_CONSISTENCY", "QUORUM")
    args = stream_submission("/ckpt", 0.5, "cassandra")["application_args"]
    assert args[args.index("--cassandra-consistency") + 1] == "QUORUM"

    operator = CdcStreamSubmitOperator(task_id="run_stream")
    operator.apply_cluster_resources(CLUSTER_ENV)
    assert (operator._executor_memory, operator._executor_cores, operator._total_executor_cores) == ("4g", 4, 12)


@pytest.mark.parametrize("extra, url", [
    ({"db": 0}, "redis://:p%40ss@redis:6379/0"),
    ({"db": 2, "ssl": True}, "rediss://:p%40ss@redis:6379/2"),
    ({"ssl": "true"}, "rediss://:p%40ss@redis:6379/0"),
])
def test_the_redis_url_carries_the_connections_password_database_and_tls(extra, url):
    from cdc_platform.hooks.redis import redis_url_of

    assert redis_url_of("redis", 6379, "p@ss", extra) == url


def test_a_sentinel_connection_names_the_sentinels_the_master_and_the_database():
    from cdc_platform.hooks.redis import redis_url_of
    from cdc_platform.redis_client import SentinelTarget, parse_sentinel_url

    url = redis_url_of("s1,s2:26380", None, "p@ss", {"db": 1, "sentinel_master": "cdc"})
    assert url == "redis+sentinel://:p%40ss@s1:26379,s2:26380/cdc/1"
    assert parse_sentinel_url(url) == SentinelTarget((("s1", 26379), ("s2", 26380)), "cdc", 1, "p@ss")
    with pytest.raises(ValueError, match="master name"):
        parse_sentinel_url("redis+sentinel://s1:26379")
