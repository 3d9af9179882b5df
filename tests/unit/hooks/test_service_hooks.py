"""What our hooks read from Airflow connections (defined here as AIRFLOW_CONN_* variables, the
way the stack defines them): every extra reaches the client, not just the address."""
from __future__ import annotations

import json

import pytest

from cdc_platform.hooks import cassandra, http, kafka
from cdc_platform.kafka_clients import bootstrap_of, client_config, decode_client_config, encode_client_config


def define(monkeypatch, conn_id: str, **conn) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def test_the_kafka_config_keeps_every_security_setting_of_the_connection(monkeypatch):
    extra = {"bootstrap.servers": "b1:9093,b2:9093", "security.protocol": "SASL_SSL",
             "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "cdc", "sasl.password": "s3cret",
             "ssl.ca.location": "/etc/kafka/ca.pem"}
    conn_id = define(monkeypatch, "kafka_test", conn_type="kafka", extra=extra)
    config = kafka.kafka_config(conn_id)
    assert config == extra
    assert bootstrap_of(config) == "b1:9093,b2:9093"
    # What a client then opens with: the connection's settings and its own.
    assert client_config(config, {"group.id": "g"}) == {**extra, "group.id": "g"}


def test_a_kafka_connection_without_bootstrap_servers_is_refused(monkeypatch):
    conn_id = define(monkeypatch, "kafka_empty", conn_type="kafka", extra={"security.protocol": "SSL"})
    with pytest.raises(ValueError, match="bootstrap.servers"):
        kafka.kafka_config(conn_id)


def test_a_bootstrap_string_still_makes_a_client_config():
    assert client_config("k:9092", {"acks": "all"}) == {"bootstrap.servers": "k:9092", "acks": "all"}
    assert bootstrap_of("k:9092") == bootstrap_of({"bootstrap.servers": "k:9092", "x": 1}) == "k:9092"


def test_a_client_config_travels_to_another_process_whole_or_not_at_all():
    config = {"bootstrap.servers": "b:9093", "sasl.password": 's"3\\c', "socket.keepalive.enable": True,
              "retries": 3}
    assert decode_client_config(encode_client_config(config)) == config
    # A callback the provider resolved for this process cannot travel: named, never dropped.
    with pytest.raises(ValueError, match="error_cb, oauth_cb"):
        encode_client_config({**config, "oauth_cb": lambda _: ("t", 0), "error_cb": print})
    with pytest.raises(ValueError, match="JSON object"):
        decode_client_config('["b:9093"]')


@pytest.mark.parametrize("conn, url", [
    ({"host": "api.test", "port": 8090}, "http://api.test:8090"),
    ({"host": "api.test", "schema": "https"}, "https://api.test"),
    ({"host": "https://api.test/base"}, "https://api.test/base"),
    # Extras configure the provider's session (headers, timeouts), never the address.
    ({"host": "api.test", "port": 8443, "schema": "https", "extra": {"timeout": 3, "X-Team": "cdc"}},
     "https://api.test:8443"),
])
def test_http_base_urls_come_from_the_provider(monkeypatch, conn, url):
    conn_id = define(monkeypatch, "http_test", conn_type="http", password="tok", **conn)
    assert http.base_url(conn_id) == url
    assert http.base_url_and_token(conn_id) == (url, "tok")


def test_a_base_url_is_read_without_opening_a_session(monkeypatch):
    import airflow.providers.http.hooks.http as provider

    def no_session():
        raise AssertionError("base_url opened a requests session")

    monkeypatch.setattr(provider, "Session", no_session)
    conn_id = define(monkeypatch, "http_test", conn_type="http", host="api.test", port=8090)
    assert http.base_url(conn_id) == "http://api.test:8090"


def test_the_alert_webhook_is_the_base_url_plus_the_endpoint_extra(monkeypatch):
    from cdc_platform.alerting import webhook_url

    conn_id = define(monkeypatch, "alerts_test", conn_type="http", host="alerts.test", port=8095,
                     extra={"endpoint": "/alerts"})
    assert webhook_url(conn_id) == "http://alerts.test:8095/alerts"


def test_cassandra_sessions_take_the_driver_settings_from_the_connection(monkeypatch):
    from airflow.providers.apache.cassandra.hooks.cassandra import CassandraHook
    from cassandra.policies import RoundRobinPolicy

    conn_id = define(monkeypatch, "cassandra_test", conn_type="cassandra", host="127.0.0.1,localhost", port=9142,
                     login="admin", password="pw",
                     extra={"protocol_version": 5, "load_balancing_policy": "RoundRobinPolicy"})
    cluster = CassandraHook(cassandra_conn_id=conn_id).get_cluster()  # built, not connected
    assert (cluster.contact_points, cluster.port, cluster.protocol_version) == (["127.0.0.1", "localhost"], 9142, 5)
    assert isinstance(cluster.load_balancing_policy, RoundRobinPolicy)
    assert cassandra.cassandra_endpoint_and_credentials(conn_id) == ("127.0.0.1,localhost", 9142, "admin", "pw")


def policy_chain(policy) -> list:
    """The policy's type and, for a token-aware one, its child's, with a DC-aware policy's settings."""
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    chain = []
    while isinstance(policy, TokenAwarePolicy):
        chain.append(TokenAwarePolicy)
        policy = policy._child_policy
    chain.append(type(policy))
    if isinstance(policy, DCAwareRoundRobinPolicy):
        chain.append((policy.local_dc, policy.used_hosts_per_remote_dc))
    return chain


def test_the_provider_hook_and_our_builder_read_the_driver_settings_alike(monkeypatch):
    """Tasks (CassandraHook) and everything without Airflow (cassandra_cluster) read the one
    definition: the same policy and protocol come out of both."""
    from airflow.providers.apache.cassandra.hooks.cassandra import CassandraHook
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    from cdc_platform.cassandra_cluster import CASSANDRA_DRIVER_EXTRA, cassandra_cluster

    conn_id = define(monkeypatch, "cassandra_settings", conn_type="cassandra", host="127.0.0.1", port=9042,
                     login="cdc_admin", password="pw", extra=CASSANDRA_DRIVER_EXTRA)
    hook = CassandraHook(cassandra_conn_id=conn_id)
    with hook.get_cluster() as tasks_cluster, cassandra_cluster("127.0.0.1", 9042, "cdc_admin", "pw") as our_cluster:
        ours = policy_chain(our_cluster.profile_manager.default.load_balancing_policy)
        assert ours == [TokenAwarePolicy, DCAwareRoundRobinPolicy, ("", 0)]
        assert policy_chain(tasks_cluster.profile_manager.default.load_balancing_policy) == ours
        assert tasks_cluster.protocol_version == our_cluster.protocol_version == 5
        assert (tasks_cluster.auth_provider.username, our_cluster.auth_provider.username) == ("cdc_admin", "cdc_admin")
