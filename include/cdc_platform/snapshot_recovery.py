"""Recovering from a lost replication slot: a fresh Debezium snapshot that every sink absorbs.

Without its slot Debezium cannot resume: the changes it has not read are gone from the WAL it
can reach, and its task fails ("... no longer available"). Only a new snapshot brings them back.
The ``cdc_resnapshot`` DAG runs these steps in order; each can be re-run:

1. stop the connector (STOPPED, KIP-875): its task lets go of the slot;
2. reset the connector's source offsets, so that on resume Debezium takes its initial snapshot;
3. drop the slot if one is left: Debezium then creates it and snapshots from the snapshot the
   slot exports, so the snapshot and the stream meet exactly (nothing missed, nothing twice);
4. resume, and wait until the snapshot is done and Debezium streams again;
5. once the stream has caught up, sweep: rows the sinks hold that PostgreSQL no longer has were
   deleted while no slot recorded it. Each gets a delete on the stream's repairs topic, a
   normalized change that the core query writes to every sink as it writes any delete.

Snapshot rows reach the sinks as reads (``op`` r) at the new slot's position, above every
position the sinks hold, so they overwrite what changed meanwhile; the REST service receives
a read event for every row again, as every Debezium consumer does after a re-snapshot.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from cdc_platform import names
from cdc_platform.aggregates.model import Row
from cdc_platform.connect_rest_client import KafkaConnectClient
from cdc_platform.polling import wait_until
from cdc_platform.kafka_clients import client_config

log = logging.getLogger(__name__)

SWEEP_OP = "d"


def stop_connector(connect: KafkaConnectClient, name: str = names.CONNECTOR_NAME, timeout: float = 120) -> str:
    if connect.status(name) is None:
        raise LookupError(f"connector {name} is not registered; run cdc_provision first")
    connect.stop(name)
    return connect.wait_state(name, "STOPPED", timeout=timeout).connector


def reset_offsets(connect: KafkaConnectClient, name: str = names.CONNECTOR_NAME) -> dict:
    before = connect.offsets(name)
    message = connect.reset_offsets(name)
    return {"offsets_before": before, "message": message}


def drop_slot(pg_conn, slot: str = names.REPLICATION_SLOT, timeout: float = 60) -> bool:
    """Drop the slot if it exists; True when it did. Waits for its last reader to let go."""
    pg_conn.autocommit = True
    with pg_conn.cursor() as cur:
        def active() -> bool | None:
            cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            row = cur.fetchone()
            return None if row is None else row[0]

        state = wait_until(active, timeout, 1, f"replication slot {slot} to be let go (is another connector "
                           "reading it?)", until=lambda is_active: not is_active, error=RuntimeError)
        if state is None:  # no such slot
            return False
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        return True


def snapshot_done(offsets: list[dict]) -> bool:
    """Debezium's committed offsets say it streams again: it has some, and none marks a snapshot."""
    return bool(offsets) and not any(entry.get("offset", {}).get("snapshot") for entry in offsets)


def resume_and_wait_for_snapshot(connect: KafkaConnectClient, name: str = names.CONNECTOR_NAME,
                                 timeout: float = 1800, poll_s: float = 5) -> dict:
    connect.resume(name)
    started = time.monotonic()
    connect.wait_running(name, timeout=180)
    while True:
        offsets = connect.offsets(name)
        if snapshot_done(offsets):
            return {"seconds": round(time.monotonic() - started, 1), "offsets": offsets}
        state = connect.status(name)
        if state and state.failed:
            raise RuntimeError(f"connector {name} failed during the snapshot: {(state.trace or '')[:2000]}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the snapshot has not finished after {timeout:.0f}s; offsets: {offsets}")
        log.info("snapshot running for %.0fs; offsets %s", time.monotonic() - started, offsets)
        time.sleep(poll_s)


@dataclass(frozen=True)
class Sweep:
    deleted_at_source: list[int]
    position: int


def rows_deleted_at_source(sink_rows: Mapping[int, Row], source_ids: Iterable[int]) -> list[int]:
    return sorted(set(sink_rows) - set(source_ids))


def sweep_change(row: Row, position: int, now_ms: int) -> dict:
    """The delete of ``row`` as a normalized change (the stream's schemas.CHANGE, timestamps in
    epoch microseconds): every sink applies it as a delete seen at ``position``."""
    return {
        "id": row.id, "op": SWEEP_OP, "position": position, "source_ts_ms": now_ms,
        "content_id": row.content_id, "user_id": None, "event_type": None,
        "event_ts": None if row.event_ts_ms is None else row.event_ts_ms * 1000,
        "duration_ms": None, "device": row.device, "raw_payload": None, "length_seconds": None,
        "engagement_pct": row.engagement_pct,
    }


def publish_sweep(bootstrap: str, sink_rows: Mapping[int, Row], deleted: list[int], position: int,
                  topic: str = names.REPAIR_CHANGES_TOPIC) -> int:
    from confluent_kafka import Producer

    producer = Producer(client_config(bootstrap, {"acks": "all", "enable.idempotence": True,
                         "log_level": 0}))
    failures: list[str] = []
    now_ms = int(time.time() * 1000)
    for row_id in deleted:
        change = sweep_change(sink_rows[row_id], position, now_ms)
        producer.produce(topic, key=str(row_id), value=json.dumps(change),
                         on_delivery=lambda err, _msg: err and failures.append(str(err)))
        producer.poll(0)
    if producer.flush(60) or failures:
        raise RuntimeError(f"sweep deletes not all written to {topic}: {failures[:5]}")
    return len(deleted)


def current_wal_position(pg_conn) -> int:
    """The LSN now, as the integer Debezium reports; above every position the sinks hold."""
    with pg_conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        position = int(cur.fetchone()[0])
    pg_conn.rollback()
    return position


def source_event_ids(pg_conn) -> set[int]:
    with pg_conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {names.PG_EVENTS_TABLE}")
        ids = {r[0] for r in cur.fetchall()}
    pg_conn.rollback()
    return ids
