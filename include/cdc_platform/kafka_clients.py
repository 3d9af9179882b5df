"""confluent-kafka client configs, from a bootstrap string (the Spark job, the local tools) or
from a whole connection config (``hooks.kafka.kafka_config``: SASL, SSL, callbacks), which then
reaches every client the platform opens."""
from __future__ import annotations

import json
from collections.abc import Mapping

KafkaSettings = str | Mapping

# The Kafka connection's client config, as JSON, in the Spark job's environment: it holds
# secrets (sasl.password, ssl.key.password), which must never be on a command line.
CLIENT_CONFIG_ENV = "CDC_KAFKA_CLIENT_CONFIG"


def client_config(kafka: KafkaSettings, settings: Mapping | None = None) -> dict:
    """The connection's config plus this client's own ``settings`` (group id, acks, ...)."""
    base = {"bootstrap.servers": kafka} if isinstance(kafka, str) else dict(kafka)
    return {**base, **(settings or {})}


def bootstrap_of(kafka: KafkaSettings) -> str:
    return kafka if isinstance(kafka, str) else kafka["bootstrap.servers"]


def encode_client_config(config: Mapping) -> str:
    """``config`` as JSON for another process's environment. The provider resolves allow-listed
    callbacks (``oauth_cb``, ``error_cb``, ...) to Python functions, which cannot travel: they are
    refused by name rather than dropped, since a client without its token callback cannot log in."""
    unplain = sorted(key for key, value in config.items() if not isinstance(value, (str, int, float, bool, type(None))))
    if unplain:
        raise ValueError(f"the Kafka client settings {', '.join(unplain)} are not plain values (callbacks, "
                         "resolved in this process) and cannot be passed to another process; give that "
                         "process a connection without them")
    return json.dumps(dict(config), sort_keys=True)


def decode_client_config(text: str) -> dict:
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ValueError(f"a Kafka client config is a JSON object, not {type(config).__name__}")
    return config
