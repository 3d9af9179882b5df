"""One module per supervised service; ``build_all`` returns them in start order."""
from __future__ import annotations

from cdc_local.stack.config import StackConfig
from cdc_local.stack.service import Service


def build_all(cfg: StackConfig, secrets: dict[str, str]) -> list[Service]:
    from cdc_local.stack.services import airflow, alerts, cassandra, connect, kafka, postgres, redis, restapi

    return [
        postgres.service(cfg, secrets),
        redis.service(cfg, secrets),
        restapi.service(cfg, secrets),
        alerts.service(cfg, secrets),
        kafka.service(cfg, secrets),
        cassandra.service(cfg, secrets),
        connect.service(cfg, secrets),
        *airflow.services(cfg, secrets),
    ]
