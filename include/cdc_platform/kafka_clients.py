"""confluent-kafka client configs, from a bootstrap string (the Spark job, the local tools) or
from a whole connection config (``hooks.kafka.kafka_config``: SASL, SSL, callbacks), which then
reaches every client the platform opens."""
from __future__ import annotations

from collections.abc import Mapping

KafkaSettings = str | Mapping


def client_config(kafka: KafkaSettings, settings: Mapping | None = None) -> dict:
    """The connection's config plus this client's own ``settings`` (group id, acks, ...)."""
    base = {"bootstrap.servers": kafka} if isinstance(kafka, str) else dict(kafka)
    return {**base, **(settings or {})}


def bootstrap_of(kafka: KafkaSettings) -> str:
    return kafka if isinstance(kafka, str) else kafka["bootstrap.servers"]
