"""The ``cdc_resnapshot`` tasks: each resolves its connections and runs one step of
``cdc_platform.snapshot_recovery``."""
from __future__ import annotations

import logging
from contextlib import closing

from airflow.providers.postgres.hooks.postgres import PostgresHook

from cdc_platform import connections as conn_ids
from cdc_platform import names, snapshot_recovery
from cdc_platform.hooks.cassandra import cassandra_session
from cdc_platform.hooks.kafka import kafka_config
from cdc_platform.hooks.kafka_connect import KafkaConnectHook
from cdc_platform.kafka_clients import bootstrap_of
from cdc_platform.orchestration import require_confirmation

log = logging.getLogger(__name__)


def stop_connector(confirm: bool, kafka_connect_conn_id: str = conn_ids.KAFKA_CONNECT_CONN_ID) -> dict:
    require_confirmation(confirm, "the run stops the connector, forgets its offsets, drops the replication slot "
                                  "and snapshots every captured table again")
    connect = KafkaConnectHook(kafka_connect_conn_id).get_conn()
    return {"state": snapshot_recovery.stop_connector(connect)}


def reset_offsets(kafka_connect_conn_id: str = conn_ids.KAFKA_CONNECT_CONN_ID) -> dict:
    report = snapshot_recovery.reset_offsets(KafkaConnectHook(kafka_connect_conn_id).get_conn())
    log.info("connector offsets reset: %s", report)
    return report


def drop_slot(postgres_conn_id: str = conn_ids.POSTGRES_CONN_ID) -> dict:
    with closing(PostgresHook(postgres_conn_id=postgres_conn_id).get_conn()) as conn:
        dropped = snapshot_recovery.drop_slot(conn)
    log.info("replication slot %s %s", names.REPLICATION_SLOT, "dropped" if dropped else "was already gone")
    return {"slot": names.REPLICATION_SLOT, "dropped": dropped}


def snapshot(kafka_connect_conn_id: str = conn_ids.KAFKA_CONNECT_CONN_ID, timeout: float = 1800) -> dict:
    report = snapshot_recovery.resume_and_wait_for_snapshot(KafkaConnectHook(kafka_connect_conn_id).get_conn(),
                                                     timeout=timeout)
    log.info("snapshot done in %ss; Debezium streams again from %s", report["seconds"], report["offsets"])
    return report


def sweep_deleted_rows(kafka_conn_id: str = conn_ids.KAFKA_CONN_ID, postgres_conn_id: str = conn_ids.POSTGRES_CONN_ID,
                       cassandra_conn_id: str = conn_ids.CASSANDRA_CONN_ID, catch_up_timeout: float = 1800) -> dict:
    """After the stream has applied the snapshot: a delete for every row the sinks hold that the
    source no longer has. Cassandra is read before PostgreSQL, so a row inserted meanwhile is
    never taken for a deleted one."""
    from cdc_platform import stream_progress
    from cdc_platform.aggregates import reconciliation
    from cdc_platform.state_paths import checkpoint_root

    bootstrap = kafka_config(kafka_conn_id)
    # The catch-up check reads end offsets with a plain client: it takes only the bootstrap.
    waited = stream_progress.wait_caught_up({"KAFKA_BOOTSTRAP": bootstrap_of(bootstrap),
                                             "SPARK_CHECKPOINT_ROOT": checkpoint_root()},
                                    timeout=catch_up_timeout)
    cluster, session = cassandra_session(cassandra_conn_id)
    try:
        sink_rows = reconciliation.read_cassandra_rows(session)
    finally:
        cluster.shutdown()
    with closing(PostgresHook(postgres_conn_id=postgres_conn_id).get_conn()) as conn:
        deleted = snapshot_recovery.rows_deleted_at_source(sink_rows, snapshot_recovery.source_event_ids(conn))
        position = snapshot_recovery.current_wal_position(conn)
    swept = snapshot_recovery.publish_sweep(bootstrap, sink_rows, deleted, position) if deleted else 0
    log.info("stream caught up after %.0fs; %d rows deleted at the source while no slot recorded it: %s",
             waited, swept, deleted[:50])
    return {"caught_up_after_s": round(waited, 1), "swept": swept, "swept_ids": deleted[:1000], "position": position}
