"""Runbook steps that touch only files: setting a query's checkpoint aside."""
from __future__ import annotations

import pytest

from cdc_local import pipeline_driver
from cdc_platform import names


def test_a_set_aside_checkpoint_is_kept_renamed_and_its_failure_report_cleared(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_driver, "stream_driver_pids", lambda: [])
    checkpoint = tmp_path / names.STREAM_CORE_QUERY
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "7").write_text("v1")
    progress = tmp_path / names.STREAM_PROGRESS_DIR
    progress.mkdir()
    (progress / f"{names.STREAM_CORE_QUERY}.failure.json").write_text("{}")
    aside = pipeline_driver.set_aside_checkpoint({"SPARK_CHECKPOINT_ROOT": str(tmp_path)}, names.STREAM_CORE_QUERY)
    assert not checkpoint.exists()
    assert (aside / "offsets" / "7").read_text() == "v1"
    assert aside.name.startswith(f"{names.STREAM_CORE_QUERY}.set-aside-")
    assert not (progress / f"{names.STREAM_CORE_QUERY}.failure.json").exists()


def test_a_running_streams_checkpoint_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_driver, "stream_driver_pids", lambda: [4242])
    (tmp_path / names.STREAM_CORE_QUERY).mkdir()
    with pytest.raises(RuntimeError, match="stop the stream first"):
        pipeline_driver.set_aside_checkpoint({"SPARK_CHECKPOINT_ROOT": str(tmp_path)}, names.STREAM_CORE_QUERY)
    assert (tmp_path / names.STREAM_CORE_QUERY).is_dir()
