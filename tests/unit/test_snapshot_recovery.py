"""The re-snapshot's decisions that need no services."""
from __future__ import annotations

import pytest

from cdc_platform import snapshot_recovery
from cdc_platform.aggregates.model import Row

STREAMING = [{"partition": {"server": "p"}, "offset": {"lsn_proc": 10, "lsn_commit": 9, "lsn": 10, "txId": 5}}]
SNAPSHOTTING = [{"partition": {"server": "p"}, "offset": {"lsn": 10, "snapshot": "INITIAL",
                                                          "last_snapshot_record": False}}]


def test_the_run_refuses_to_start_without_its_confirmation():
    from cdc_platform.orchestration import NotConfirmed, resnapshot as tasks

    with pytest.raises(NotConfirmed, match="confirm=true: the run stops the connector"):
        tasks.stop_connector(confirm=False, kafka_connect_conn_id="never_resolved")


@pytest.mark.parametrize(("offsets", "done"), [([], False), (SNAPSHOTTING, False), (STREAMING, True)])
def test_the_snapshot_is_done_once_the_offsets_say_debezium_streams(offsets, done):
    assert snapshot_recovery.snapshot_done(offsets) is done


def test_only_rows_the_sinks_hold_and_the_source_lost_are_swept():
    sink_rows = {rid: Row(rid, "c", 0, "tv", 0.5, 100) for rid in (1, 2, 3)}
    assert snapshot_recovery.rows_deleted_at_source(sink_rows, {2, 4}) == [1, 3]


def test_a_sweep_delete_is_a_normalized_change_every_sink_reads():
    from cdc_stream import schemas

    change = snapshot_recovery.sweep_change(Row(7, "c-1", 1_700_000_000_000, "tv", 0.25, 100), position=500,
                                     now_ms=1_800_000_000_000)
    assert set(change) == {f.name for f in schemas.CHANGE.fields}
    assert (change["id"], change["op"], change["position"]) == (7, "d", 500)
    assert change["event_ts"] == 1_700_000_000_000_000  # epoch microseconds, as the stream writes them
    assert (change["content_id"], change["device"], change["engagement_pct"]) == ("c-1", "tv", 0.25)
