from __future__ import annotations

import pytest

from cdc_platform.state_paths import checkpoint_root


def test_an_explicit_checkpoint_root_wins():
    assert checkpoint_root({"SPARK_CHECKPOINT_ROOT": "s3a://bucket/ckpt", "CDC_STATE_DIR": "/state"}) == "s3a://bucket/ckpt"


def test_otherwise_the_checkpoints_live_in_the_state_dir():
    assert checkpoint_root({"CDC_STATE_DIR": "/state"}) == "/state/checkpoints"


def test_without_either_it_refuses_rather_than_use_a_temporary_directory():
    with pytest.raises(RuntimeError, match="SPARK_CHECKPOINT_ROOT.*CDC_STATE_DIR"):
        checkpoint_root({})
