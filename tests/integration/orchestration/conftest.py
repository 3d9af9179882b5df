import os

import pytest


@pytest.fixture
def airflow_connections(stack_env, monkeypatch):
    """Expose the stack's AIRFLOW_CONN_* so hooks resolve connections exactly as tasks do."""
    for key, value in stack_env.items():
        if key.startswith("AIRFLOW_CONN_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_HOME", stack_env["AIRFLOW_HOME"])
    yield {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}
