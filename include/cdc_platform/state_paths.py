"""Where the platform keeps its state on disk: one rule for the stream's submission, the DAG
tasks and the tools."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CHECKPOINT_ROOT_ENV = "SPARK_CHECKPOINT_ROOT"
STATE_DIR_ENV = "CDC_STATE_DIR"


def checkpoint_root(env: Mapping[str, str] | None = None) -> str:
    """``SPARK_CHECKPOINT_ROOT``, else ``$CDC_STATE_DIR/checkpoints``.

    Neither set is an error rather than a temporary directory: the checkpoints are the stream's
    position, and a temporary directory loses it at the next reboot.
    """
    env = os.environ if env is None else env
    if env.get(CHECKPOINT_ROOT_ENV):
        return env[CHECKPOINT_ROOT_ENV]
    if env.get(STATE_DIR_ENV):
        return str(Path(env[STATE_DIR_ENV]) / "checkpoints")
    raise RuntimeError(f"set {CHECKPOINT_ROOT_ENV} (a path or URL shared by the driver and the DAG tasks) "
                       f"or {STATE_DIR_ENV}: the stream's checkpoints need a home that outlives the process")
