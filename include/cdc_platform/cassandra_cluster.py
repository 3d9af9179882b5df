"""The Cassandra Cluster of the local tools and the tests (stack, demo, benchmark), from
``.stack/env`` values. DAG tasks get theirs from the provider's CassandraHook
(``hooks.cassandra``), with the same driver settings taken from the connection's extras
(``cdc_local.stack.envfile.CASSANDRA_DRIVER_EXTRA``). The stream's sink builds its own sessions
(``cdc_stream.cassandra_sink.get_session``): token-aware, at the sink's consistency level,
reused by each Python worker across batches."""
from __future__ import annotations


def cassandra_cluster(host: str, port: int, username: str | None = None, password: str | None = None, **kwargs):
    """A Cluster pinned to protocol v5 (Cassandra 5) with an explicit load-balancing policy,
    so the driver neither probes protocol versions nor warns on every connect. With a
    username it logs in (PasswordAuthenticator)."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    if username:
        from cassandra.auth import PlainTextAuthProvider

        kwargs["auth_provider"] = PlainTextAuthProvider(username=username, password=password or "")
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=kwargs.pop("request_timeout", 20))
    return Cluster([host], port=int(port), protocol_version=5,
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **kwargs)


def cassandra_cluster_from_env(env, **kwargs):
    """The admin's Cluster from ``.stack/env`` values (demo, tests, tools)."""
    return cassandra_cluster(env["CASSANDRA_HOST"], env["CASSANDRA_PORT"], env.get("CASSANDRA_USER"),
                             env.get("CASSANDRA_PASSWORD"), **kwargs)
