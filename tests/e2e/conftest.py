"""The live stack's clients, shared by every end-to-end test of the session."""
from __future__ import annotations

import psycopg2
import pytest

from cdc_local import pipeline_driver
from cdc_platform.cassandra_cluster import cassandra_cluster_from_env
from tests.e2e.browser import page  # noqa: F401  (the browser page fixture of the UI tests)


@pytest.fixture(scope="session")
def airflow(stack_env):
    client = pipeline_driver.airflow_client(stack_env)
    client.wait_for_dags(pipeline_driver.PIPELINE_DAGS)
    return client


class ReconnectingConnection:
    """A psycopg2 connection that reconnects once its server went away (a fault test restarts
    PostgreSQL): the first call after the restart fails, the next one gets a new connection."""

    def __init__(self, dsn: str):
        self._dsn = dsn
        self._conn = psycopg2.connect(dsn)

    def __getattr__(self, name):
        if self._conn.closed:
            self._conn = psycopg2.connect(self._dsn)
        return getattr(self._conn, name)

    def close(self) -> None:
        self._conn.close()


@pytest.fixture(scope="session")
def pg(stack_env):
    conn = ReconnectingConnection(stack_env["PG_DSN"])
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def cassandra(stack_env):
    cluster = cassandra_cluster_from_env(stack_env)
    yield cluster.connect()
    cluster.shutdown()


@pytest.fixture(scope="session")
def api(stack_env):
    api = pipeline_driver.RestApi(stack_env)
    api.clear_faults()
    yield api
    api.clear_faults()


@pytest.fixture(scope="session")
def provisioned(airflow, stack_env):
    run = pipeline_driver.run_dag(airflow, "cdc_provision")
    assert run["state"] == "success", run["task_instances"]
    return airflow


@pytest.fixture
def stream(provisioned, stack_env):
    """Provisioned and streaming: each test starts with the connector registered and the stream
    running, even when the test before it took either away and failed before it could restore it."""
    from cdc_platform import names
    from cdc_platform.connect_rest_client import KafkaConnectClient

    connect = KafkaConnectClient(stack_env["CONNECT_URL"])
    state = connect.status(names.CONNECTOR_NAME)
    if state is None:
        run = pipeline_driver.run_dag(provisioned, "cdc_provision")
        assert run["state"] == "success", run["task_instances"]
    elif state.connector in ("PAUSED", "STOPPED"):
        connect.resume(names.CONNECTOR_NAME)
        connect.wait_running(names.CONNECTOR_NAME)
    pipeline_driver.start_stream(provisioned, stack_env, timeout=300)
    return provisioned


@pytest.fixture(scope="session")
def supervisor(stack_config):
    from cdc_local.stack.supervisor import Supervisor

    return Supervisor(stack_config)


def pytest_collection_modifyitems(config, items):
    """Tests that restart the whole stack run first, before any test starts the long-running
    stream that a restart would stop (the order of the others is kept)."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_stack") is None)
