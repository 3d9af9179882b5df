"""The Kafka connection as a confluent-kafka client config, built by the provider's hook."""
from __future__ import annotations

from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

from cdc_platform.connections import KAFKA_CONN_ID


class KafkaClientConfigHook(KafkaBaseHook):
    """Our clients take a config (they add their own group ids and delivery settings) where the
    provider hands out finished clients; this exposes the provider's config builder, so every
    extra of the connection (SASL, SSL, allow-listed callbacks, managed-cloud tokens) reaches
    them instead of only ``bootstrap.servers``."""

    def client_config(self) -> dict:
        return self._build_config()


def kafka_config(conn_id: str = KAFKA_CONN_ID) -> dict:
    return KafkaClientConfigHook(kafka_config_id=conn_id).client_config()
