"""The ``cdc_dlq_reprocess`` task: one bounded round over the DLQ, alerting on anything parked."""
from __future__ import annotations

import logging
from dataclasses import asdict

from cdc_platform import alerting, names
from cdc_platform import connections as conn_ids
from cdc_platform.delivery import dlq
from cdc_platform.health import recorder
from cdc_platform.hooks.http import base_url_and_token
from cdc_platform.hooks.kafka import kafka_config
from cdc_platform.orchestration import require_confirmation

log = logging.getLogger(__name__)


def run(max_attempts: int = dlq.DEFAULT_MAX_ATTEMPTS, base_backoff_s: float = dlq.DEFAULT_BACKOFF_S,
        max_entries: int | None = None, alert: bool = True, kafka_conn_id: str = conn_ids.KAFKA_CONN_ID,
        rest_api_conn_id: str = conn_ids.REST_API_CONN_ID, alerts_conn_id: str = conn_ids.ALERTS_CONN_ID,
        **topics) -> dict:
    bootstrap = kafka_config(kafka_conn_id)
    api_url, token = base_url_and_token(rest_api_conn_id)
    if not token:
        raise ValueError(f"connection {rest_api_conn_id} has no password (the API bearer token)")
    report = dlq.reprocess(bootstrap, api_url, token, max_attempts=max_attempts, base_backoff_s=base_backoff_s,
                           max_entries=max_entries, **topics)
    result = asdict(report)
    result["dlq_depth_after"] = dlq.dlq_depth(bootstrap, topics.get("dlq_topic", names.DLQ_TOPIC),
                                              topics.get("group_id", names.DLQ_REPROCESS_GROUP))
    log.info("DLQ reprocess: delivered %(delivered)s, requeued %(requeued)s, parked %(parked)s, "
             "not due %(skipped_not_due)s, depth after %(dlq_depth_after)s", result)
    recorder.record_event(
        "dlq_round", f"delivered {report.delivered}, requeued {report.requeued}, parked {report.parked}, "
                     f"{result['dlq_depth_after']} left", {k: v for k, v in result.items() if k != "parked_keys"},
        severity="error" if report.parked else "warning" if report.requeued else "ok")
    if report.parked and alert:
        alerting.send(
            title=f"DLQ: {report.parked} entr{'y' if report.parked == 1 else 'ies'} parked after {max_attempts} attempts",
            source="dlq", severity="error",
            message="These changes were not delivered to the REST API and need a person: "
                    f"{', '.join(report.parked_keys[:20])}",
            details=result, conn_id=alerts_conn_id)
    return result


def replay_parked(confirm: bool, keys: list[str] | None = None, max_attempts: int = dlq.DEFAULT_MAX_ATTEMPTS,
                  kafka_conn_id: str = conn_ids.KAFKA_CONN_ID, rest_api_conn_id: str = conn_ids.REST_API_CONN_ID,
                  alerts_conn_id: str = conn_ids.ALERTS_CONN_ID) -> dict:
    """Move parked entries (``keys``, or all when empty) back to the DLQ, then deliver them in one
    reprocess round. What still fails goes on through the DLQ's usual backoff and parking."""
    require_confirmation(confirm, "the run replays parked DLQ entries to the REST API")
    bootstrap = kafka_config(kafka_conn_id)
    replayed = dlq.replay_parked(bootstrap, keys or None)
    log.info("parked entries: %d moved back to the DLQ, %d kept parked", replayed.requeued, replayed.kept)
    delivery = run(max_attempts=max_attempts, base_backoff_s=dlq.DEFAULT_BACKOFF_S, kafka_conn_id=kafka_conn_id,
                   rest_api_conn_id=rest_api_conn_id, alerts_conn_id=alerts_conn_id)
    return {"replayed": asdict(replayed), "delivery": delivery,
            "still_parked": dlq.dlq_depth(bootstrap, names.PARKED_TOPIC)}
