"""Fixtures shared by every test layer.

Service fixtures read ``.stack/env`` (written by ``make up``) and are session-scoped:
the whole suite shares one running stack, as CI does.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdc_local.stack import envfile
from cdc_local.stack.config import StackConfig


@pytest.fixture(scope="session")
def stack_config() -> StackConfig:
    return StackConfig.load()


@pytest.fixture(scope="session")
def stack_env(stack_config: StackConfig) -> dict[str, str]:
    values = envfile.read(stack_config.env_file)
    if not values:
        pytest.fail(f"{stack_config.env_file} missing: the stack is not up. Run `make up` (or `make test`).")
    return values


@pytest.fixture(scope="session")
def spark():
    """A small local SparkSession for DataFrame-level tests (no Kafka needed)."""
    import sys

    from pyspark.sql import SparkSession

    # Python workers must run this interpreter (the venv), not whatever python3 is on PATH.
    os.environ["PYSPARK_PYTHON"] = sys.executable

    session = (
        SparkSession.builder.master("local[1]")
        .appName("cdc-platform-tests")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.pyspark.python", sys.executable)
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(__file__).parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path
