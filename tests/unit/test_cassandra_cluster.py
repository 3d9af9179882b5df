"""The one builder of a driver Cluster outside Airflow, from the one definition of the driver
settings. A Cluster is built without connecting, so nothing here needs Cassandra."""
from __future__ import annotations

import pytest
from cassandra import ConsistencyLevel
from cassandra.auth import PlainTextAuthProvider
from cassandra.policies import DCAwareRoundRobinPolicy, RoundRobinPolicy, TokenAwarePolicy

from cdc_platform.cassandra_cluster import (CASSANDRA_DRIVER_EXTRA, REQUEST_TIMEOUT_S, cassandra_cluster,
                                            cassandra_cluster_from_env, load_balancing_policy)


def test_the_builder_takes_protocol_policy_and_login_from_the_driver_settings():
    with cassandra_cluster("10.0.0.1,10.0.0.2", "9142", "cdc_admin", "pw") as cluster:
        profile = cluster.profile_manager.default
        assert (cluster.contact_points, cluster.port, cluster.protocol_version) == (["10.0.0.1", "10.0.0.2"], 9142, 5)
        assert isinstance(profile.load_balancing_policy, TokenAwarePolicy)
        child = profile.load_balancing_policy._child_policy
        assert isinstance(child, DCAwareRoundRobinPolicy)
        # No datacenter named: the driver takes the first contact point's.
        assert (child.local_dc, child.used_hosts_per_remote_dc) == ("", 0)
        assert isinstance(cluster.auth_provider, PlainTextAuthProvider)
        assert (cluster.auth_provider.username, cluster.auth_provider.password) == ("cdc_admin", "pw")
        assert profile.request_timeout == REQUEST_TIMEOUT_S
        assert profile.consistency_level == ConsistencyLevel.LOCAL_ONE  # the driver's default, untouched


def test_the_builder_sets_the_consistency_timeout_and_cluster_options_it_is_given():
    with cassandra_cluster("127.0.0.1", 9042, consistency="LOCAL_QUORUM", request_timeout=30, connect_timeout=3) as cluster:
        profile = cluster.profile_manager.default
        assert (profile.consistency_level, profile.request_timeout) == (ConsistencyLevel.LOCAL_QUORUM, 30)
        assert cluster.connect_timeout == 3
        assert cluster.auth_provider is None


def test_the_builder_reads_other_extras_too():
    extra = {"load_balancing_policy": "RoundRobinPolicy", "protocol_version": 4, "ssl_options": {"ca_certs": "/ca.pem"}}
    with cassandra_cluster("127.0.0.1", 9042, extra=extra) as cluster:
        assert isinstance(cluster.profile_manager.default.load_balancing_policy, RoundRobinPolicy)
        assert (cluster.protocol_version, cluster.ssl_options) == (4, {"ca_certs": "/ca.pem"})


def test_the_tools_log_in_as_the_admin_of_the_stack_env():
    env = {"CASSANDRA_HOST": "127.0.0.1", "CASSANDRA_PORT": "19042", "CASSANDRA_USER": "cdc_admin",
           "CASSANDRA_PASSWORD": "pw"}
    with cassandra_cluster_from_env(env) as cluster:
        assert (cluster.contact_points, cluster.port, cluster.auth_provider.username) == (["127.0.0.1"], 19042,
                                                                                        "cdc_admin")


@pytest.mark.parametrize("extra, message", [
    ({"load_balancing_policy": "TokenAwarPolicy"}, "unknown Cassandra load-balancing policy"),
    ({"load_balancing_policy": "TokenAwarePolicy",
      "load_balancing_policy_args": {"child_load_balancing_policy": "TokenAwarePolicy"}}, "cannot wrap itself"),
])
def test_a_policy_the_builder_cannot_build_is_refused_not_replaced(extra, message):
    with pytest.raises(ValueError, match=message):
        load_balancing_policy(extra)


def test_the_definition_is_what_the_stack_connections_carry():
    from cdc_local.stack import compose

    cassandra_connections = [conn for conn in compose.connections().values() if conn["conn_type"] == "cassandra"]
    assert cassandra_connections and all(conn["extra"] == CASSANDRA_DRIVER_EXTRA for conn in cassandra_connections)
