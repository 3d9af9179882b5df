"""The Cassandra driver settings, defined once, and the one builder of a driver ``Cluster``
outside Airflow.

``CASSANDRA_DRIVER_EXTRA`` is written in the vocabulary of the Cassandra provider's connection
extras, and two readers take it:

- DAG tasks, through the provider's ``CassandraHook`` (``hooks.cassandra``): the stack's Airflow
  connections carry it as their extras (``cdc_local.stack.envfile``, and ``docker/compose.yaml``
  rendered from it);
- :func:`cassandra_cluster`, for everything without Airflow: the stream's sink on the executors
  (``cdc_stream.cassandra_sink.get_session``), the local tools, the demo, the benchmark and the
  tests (:func:`cassandra_cluster_from_env`, from ``.stack/env`` values).

A unit test checks that both readers build the same policy and protocol from it. This module
never imports Airflow: executors do not have it.
"""
from __future__ import annotations

from typing import Any, Mapping

# Cassandra 5 speaks protocol v5: pinned, the driver neither probes versions nor warns.
# Token-aware over DC-aware round robin: each statement goes straight to a replica of its
# partition (no coordinator hop), and only to nodes of the local datacenter. local_dc is left
# unset, so the driver takes the datacenter of the first contact point: the contact points are
# local nodes everywhere we connect, and neither the local stack (SimpleSnitch) nor the compose
# image names a datacenter (both are Cassandra's default, datacenter1).
CASSANDRA_DRIVER_EXTRA: dict[str, Any] = {
    "protocol_version": 5,
    "load_balancing_policy": "TokenAwarePolicy",
    "load_balancing_policy_args": {"child_load_balancing_policy": "DCAwareRoundRobinPolicy"},
}

# DDL and repairs wait for schema agreement and large batches; the driver's 10 s is short for them.
REQUEST_TIMEOUT_S = 20

# The extras, besides the policy, that the provider passes to Cluster as they are.
_CLUSTER_EXTRAS = ("protocol_version", "ssl_options", "cql_version")


def load_balancing_policy(extra: Mapping[str, Any]):
    """The policy the extras name (``load_balancing_policy`` and ``load_balancing_policy_args``),
    built with the arguments the provider's ``CassandraHook.get_lb_policy`` gives it. A name it
    does not know is refused here rather than silently replaced by round robin."""
    return _policy(extra.get("load_balancing_policy", "RoundRobinPolicy"),
                   extra.get("load_balancing_policy_args", {}))


def _policy(name: str, args: Mapping[str, Any]):
    from cassandra import policies

    if name == "RoundRobinPolicy":
        return policies.RoundRobinPolicy()
    if name == "DCAwareRoundRobinPolicy":
        return policies.DCAwareRoundRobinPolicy(args.get("local_dc", ""),
                                                int(args.get("used_hosts_per_remote_dc", 0)))
    if name == "WhiteListRoundRobinPolicy":
        return policies.WhiteListRoundRobinPolicy(args["hosts"])
    if name == "TokenAwarePolicy":
        child = args.get("child_load_balancing_policy", "RoundRobinPolicy")
        if child == "TokenAwarePolicy":
            raise ValueError("TokenAwarePolicy cannot wrap itself")
        return policies.TokenAwarePolicy(_policy(child, args.get("child_load_balancing_policy_args", {})))
    raise ValueError(f"unknown Cassandra load-balancing policy {name!r}")


def cassandra_cluster(host: str, port: int, username: str | None = None, password: str | None = None, *,
                      extra: Mapping[str, Any] = CASSANDRA_DRIVER_EXTRA, request_timeout: float = REQUEST_TIMEOUT_S,
                      consistency: str | None = None, **cluster_options):
    """A Cluster (built, not connected) on ``host`` (one host or a comma-separated list, as in a
    connection's host field) and ``port``, with the driver settings of ``extra``: its policy,
    ``request_timeout`` and, when given, the ``consistency`` level (a name, e.g. ``LOCAL_QUORUM``)
    in the default execution profile. With a username it logs in (PasswordAuthenticator).
    ``cluster_options`` go to Cluster as they are (``connect_timeout``, ...)."""
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile

    profile: dict[str, Any] = {"load_balancing_policy": load_balancing_policy(extra), "request_timeout": request_timeout}
    if consistency is not None:
        profile["consistency_level"] = ConsistencyLevel.name_to_value[consistency]
    if username:
        from cassandra.auth import PlainTextAuthProvider

        cluster_options["auth_provider"] = PlainTextAuthProvider(username=username, password=password or "")
    cluster_options.update({key: extra[key] for key in _CLUSTER_EXTRAS if extra.get(key)})
    return Cluster(host.split(","), port=int(port), execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(**profile)},
                   **cluster_options)


def cassandra_cluster_from_env(env, **kwargs):
    """The admin's Cluster from ``.stack/env`` values (demo, tests, tools)."""
    return cassandra_cluster(env["CASSANDRA_HOST"], env["CASSANDRA_PORT"], env.get("CASSANDRA_USER"),
                             env.get("CASSANDRA_PASSWORD"), **kwargs)
