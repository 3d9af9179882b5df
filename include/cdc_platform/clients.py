"""Client construction shared by the stream, the DAG tasks, the demo and the tests."""
from __future__ import annotations


def cassandra_cluster(host: str, port: int, **kwargs):
    """A Cluster pinned to protocol v5 (Cassandra 5) with an explicit load-balancing policy,
    so the driver neither probes protocol versions nor warns on every connect."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=kwargs.pop("request_timeout", 20))
    return Cluster([host], port=int(port), protocol_version=5,
                   execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **kwargs)
