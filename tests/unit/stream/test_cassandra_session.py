"""The sink's sessions: built by the library's one builder, at the sink's consistency level, one
per process and (host, port, login, consistency), shut down at exit. The Cluster is real; only
its connect is replaced, so nothing here needs Cassandra."""
from __future__ import annotations

import atexit

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

from cdc_platform.cluster import DEFAULT_CASSANDRA_CONSISTENCY
from cdc_stream import cassandra_sink


@pytest.fixture
def clusters(monkeypatch):
    """The Clusters get_session builds; each connect returns a stand-in session naming its Cluster."""
    built, at_exit = [], []
    monkeypatch.setattr(cassandra_sink, "_sessions", {})
    monkeypatch.setattr(atexit, "register", at_exit.append)

    def connect(cluster, keyspace=None):
        built.append(cluster)
        return ("session of", cluster)

    monkeypatch.setattr(Cluster, "connect", connect)
    yield built, at_exit
    for cluster in built:
        cluster.shutdown()


def test_the_sink_session_is_token_aware_at_its_consistency_level(clusters):
    built, at_exit = clusters
    session = cassandra_sink.get_session("127.0.0.1", 9142, "cdc_sink", "pw", "QUORUM")
    [cluster] = built
    assert session == ("session of", cluster)
    profile = cluster.profile_manager.default
    assert isinstance(profile.load_balancing_policy, TokenAwarePolicy)
    assert isinstance(profile.load_balancing_policy._child_policy, DCAwareRoundRobinPolicy)
    assert (profile.consistency_level, profile.request_timeout) == (ConsistencyLevel.QUORUM,
                                                                    cassandra_sink.REQUEST_TIMEOUT_S)
    assert (cluster.contact_points, cluster.port, cluster.protocol_version) == (["127.0.0.1"], 9142, 5)
    assert (cluster.auth_provider.username, cluster.auth_provider.password) == ("cdc_sink", "pw")
    assert at_exit == [cluster.shutdown]


def test_each_process_reuses_its_session_per_endpoint_login_and_consistency(clusters):
    built, _ = clusters
    first = cassandra_sink.get_session("127.0.0.1", 9142, "cdc_sink", "pw")
    assert cassandra_sink.get_session("127.0.0.1", 9142, "cdc_sink", "pw") is first
    assert len(built) == 1
    cassandra_sink.get_session("127.0.0.1", 9142, "cdc_sink", "pw", "ONE")
    cassandra_sink.get_session("127.0.0.1", 9142)
    assert len(built) == 3
    assert built[2].auth_provider is None
    default = ConsistencyLevel.name_to_value[DEFAULT_CASSANDRA_CONSISTENCY]
    assert built[0].profile_manager.default.consistency_level == default
