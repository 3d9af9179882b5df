from __future__ import annotations

from functools import cached_property

from airflow.sdk import BaseHook

from cdc_platform.connections import KAFKA_CONNECT_CONN_ID
from cdc_platform.connect_rest_client import KafkaConnectClient


class KafkaConnectHook(BaseHook):
    """The Kafka Connect REST API of the worker named by an http connection."""

    conn_name_attr = "kafka_connect_conn_id"
    default_conn_name = KAFKA_CONNECT_CONN_ID
    conn_type = "http"
    hook_name = "Kafka Connect"

    def __init__(self, kafka_connect_conn_id: str = default_conn_name, timeout: float = 10.0):
        super().__init__()
        self.kafka_connect_conn_id = kafka_connect_conn_id
        self.timeout = timeout

    @cached_property
    def base_url(self) -> str:
        from cdc_platform.hooks.http import base_url

        return base_url(self.kafka_connect_conn_id)

    def get_conn(self) -> KafkaConnectClient:
        return KafkaConnectClient(self.base_url, timeout=self.timeout)
