"""The ``cdc_watchdog`` task: collect the pipeline's health numbers, record them in the health
history, repair what is safe, alert on breaches."""
from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import asdict, fields
from pathlib import Path

from airflow.providers.postgres.hooks.postgres import PostgresHook

from cdc_platform import alerting, names, state_paths
from cdc_platform import connections as conn_ids
from cdc_platform.delivery import dlq
from cdc_platform.health import checks, recorder
from cdc_platform.hooks.kafka import kafka_config
from cdc_platform.hooks.kafka_connect import KafkaConnectHook
from cdc_platform.hooks.redis import redis_client

log = logging.getLogger(__name__)


def thresholds_from(params: dict | None) -> checks.Thresholds:
    params = params or {}
    names_ = {f.name for f in fields(checks.Thresholds)}
    return checks.Thresholds(**{k: v for k, v in params.items() if k in names_ and v is not None})


def check(thresholds: checks.Thresholds | None = None, checkpoint_root: str | Path | None = None,
          auto_restart: bool = True, alert: bool = True, record: bool = True,
          kafka_connect_conn_id: str = conn_ids.KAFKA_CONNECT_CONN_ID,
          postgres_conn_id: str = conn_ids.POSTGRES_CONN_ID, kafka_conn_id: str = conn_ids.KAFKA_CONN_ID,
          redis_conn_id: str = conn_ids.REDIS_CONN_ID, alerts_conn_id: str = conn_ids.ALERTS_CONN_ID) -> dict:
    thresholds = thresholds or checks.Thresholds()
    metrics = checks.Metrics()
    checks.connector_metrics(KafkaConnectHook(kafka_connect_conn_id).get_conn(), metrics, auto_restart)
    with closing(PostgresHook(postgres_conn_id=postgres_conn_id).get_conn()) as conn:
        checks.slot_metrics(conn, metrics)
        checks.schema_metrics(conn, metrics)
    client = redis_client(redis_conn_id)
    try:
        checks.redis_metrics(client, metrics)
    finally:
        client.close()
    bootstrap = kafka_config(kafka_conn_id)
    checkpoint_root = Path(checkpoint_root or state_paths.checkpoint_root())
    checks.stream_metrics(bootstrap, checkpoint_root, metrics)
    checks.core_metrics(checkpoint_root, metrics)
    checks.failure_metrics(checkpoint_root, metrics)
    checks.quarantine_metrics(bootstrap, metrics)
    metrics.dlq_depth = dlq.dlq_depth(bootstrap, names.DLQ_TOPIC)
    metrics.parked_depth = dlq.dlq_depth(bootstrap, names.PARKED_TOPIC)
    breaches = checks.evaluate(metrics, thresholds)
    for key, value in metrics.as_dict().items():
        log.info("watchdog %s = %s", key, value)
    report = {"metrics": metrics.as_dict(), "breaches": [asdict(b) for b in breaches],
              "thresholds": asdict(thresholds)}
    if record:
        recorder.record_sample(report, postgres_conn_id)
    if breaches and alert:
        alerting.send(
            title=f"CDC watchdog: {len(breaches)} breach(es): {', '.join(b.check for b in breaches)}",
            source="watchdog", severity="error",
            message="; ".join(b.message for b in breaches), details=report, conn_id=alerts_conn_id)
    return report
