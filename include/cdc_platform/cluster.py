"""The settings that change when the platform moves from one machine to clusters, in one place.

Each has the embedded stack's default and is set from the environment (``CDC_*``, also read
from ``stack.env`` by the local stack, which passes them to Airflow and so to every task):

=================================  ===========================================  ==============
variable                           what                                         default
=================================  ===========================================  ==============
``CDC_KAFKA_REPLICATION_FACTOR``   replicas of every topic the platform creates 1
``CDC_KAFKA_EVENT_PARTITIONS``     partitions of the events topics and the DLQ  3
                                   (the stream's parallelism follows them)
``CDC_CASSANDRA_REPLICATION``      the keyspace's replication map, as JSON      SimpleStrategy, 1
``CDC_CASSANDRA_CONSISTENCY``      consistency level of the sink's writes       LOCAL_QUORUM
``CDC_SPARK_EXECUTOR_MEMORY``      spark-submit ``--executor-memory``           Spark's (1g)
``CDC_SPARK_EXECUTOR_CORES``       spark-submit ``--executor-cores``            Spark's
``CDC_SPARK_TOTAL_EXECUTOR_CORES`` spark-submit ``--total-executor-cores``      Spark's
=================================  ===========================================  ==============

The Spark master is the ``spark_default`` connection (``CDC_SPARK_MASTER`` for the local
stack); Redis's password, TLS and Sentinel are the ``redis_default`` connection's password and
its extras ``ssl`` and ``sentinel_master`` (``hooks.redis.redis_url_of``, ``redis_client``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping

ENV_KEYS = ("CDC_KAFKA_REPLICATION_FACTOR", "CDC_KAFKA_EVENT_PARTITIONS", "CDC_CASSANDRA_REPLICATION",
            "CDC_CASSANDRA_CONSISTENCY", "CDC_SPARK_EXECUTOR_MEMORY", "CDC_SPARK_EXECUTOR_CORES",
            "CDC_SPARK_TOTAL_EXECUTOR_CORES")
CONSISTENCY_LEVELS = ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
REPLICATION_CLASSES = ("SimpleStrategy", "NetworkTopologyStrategy")
DEFAULT_CASSANDRA_CONSISTENCY = "LOCAL_QUORUM"


class ClusterSettingsError(ValueError):
    pass


def _default_replication() -> dict[str, str]:
    return {"class": "SimpleStrategy", "replication_factor": "1"}


@dataclass(frozen=True)
class ClusterSettings:
    kafka_replication_factor: int = 1
    kafka_event_partitions: int = 3
    cassandra_replication: dict[str, str] = field(default_factory=_default_replication)
    cassandra_consistency: str = DEFAULT_CASSANDRA_CONSISTENCY
    spark_executor_memory: str | None = None
    spark_executor_cores: int | None = None
    spark_total_executor_cores: int | None = None

    def __post_init__(self) -> None:
        if self.kafka_replication_factor < 1:
            raise ClusterSettingsError(f"CDC_KAFKA_REPLICATION_FACTOR must be at least 1, not {self.kafka_replication_factor}")
        if self.kafka_event_partitions < 1:
            raise ClusterSettingsError(f"CDC_KAFKA_EVENT_PARTITIONS must be at least 1, not {self.kafka_event_partitions}")
        if self.cassandra_consistency not in CONSISTENCY_LEVELS:
            raise ClusterSettingsError(f"CDC_CASSANDRA_CONSISTENCY={self.cassandra_consistency!r}; "
                                       f"one of {', '.join(CONSISTENCY_LEVELS)}")
        strategy = self.cassandra_replication.get("class", "")
        if strategy.rsplit(".", 1)[-1] not in REPLICATION_CLASSES:
            raise ClusterSettingsError(f"CDC_CASSANDRA_REPLICATION class {strategy!r}; one of {REPLICATION_CLASSES}")
        if len(self.cassandra_replication) < 2:
            raise ClusterSettingsError("CDC_CASSANDRA_REPLICATION needs a replication_factor or a factor per datacenter")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ClusterSettings":
        env = os.environ if environ is None else environ

        def integer(key: str, default: int | None) -> int | None:
            value = env.get(key)
            if not value:
                return default
            try:
                return int(value)
            except ValueError:
                raise ClusterSettingsError(f"{key}={value!r} is not a whole number") from None

        replication = _default_replication()
        if env.get("CDC_CASSANDRA_REPLICATION"):
            try:
                parsed = json.loads(env["CDC_CASSANDRA_REPLICATION"])
            except json.JSONDecodeError as exc:
                raise ClusterSettingsError(f"CDC_CASSANDRA_REPLICATION is not JSON: {exc}") from None
            if not isinstance(parsed, dict):
                raise ClusterSettingsError("CDC_CASSANDRA_REPLICATION must be a JSON object")
            replication = {str(k): str(v) for k, v in parsed.items()}
        return cls(
            kafka_replication_factor=integer("CDC_KAFKA_REPLICATION_FACTOR", 1),
            kafka_event_partitions=integer("CDC_KAFKA_EVENT_PARTITIONS", 3),
            cassandra_replication=replication,
            cassandra_consistency=env.get("CDC_CASSANDRA_CONSISTENCY") or DEFAULT_CASSANDRA_CONSISTENCY,
            spark_executor_memory=env.get("CDC_SPARK_EXECUTOR_MEMORY") or None,
            spark_executor_cores=integer("CDC_SPARK_EXECUTOR_CORES", None),
            spark_total_executor_cores=integer("CDC_SPARK_TOTAL_EXECUTOR_CORES", None),
        )

    def topic_config(self) -> dict[str, str]:
        """Per-topic settings that follow replication: a write is acknowledged by all in-sync
        replicas (acks=all), and with three or more replicas one may be down."""
        return {"min.insync.replicas": str(max(1, min(2, self.kafka_replication_factor - 1)))}

    def cql_replication(self) -> str:
        """The keyspace's replication map as CQL."""
        return "{" + ", ".join(f"'{k}': '{v}'" for k, v in self.cassandra_replication.items()) + "}"

    def spark_submit_resources(self) -> dict[str, object]:
        """SparkSubmitOperator keyword arguments; Spark's defaults where unset."""
        resources = {"executor_memory": self.spark_executor_memory, "executor_cores": self.spark_executor_cores,
                     "total_executor_cores": self.spark_total_executor_cores}
        return {k: v for k, v in resources.items() if v is not None}
