"""The stream on a real Spark standalone cluster (master and worker from the pyspark wheel,
loopback only), run through Airflow by pointing ``spark_default`` at ``spark://``."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from cdc_local import pipeline_driver
from cdc_platform import names
from cdc_local.stack import spark_standalone
from tests.e2e.checks import assert_rest_holds_each_change_once, assert_sinks_match_postgres, write_workload
from tests.polling import poll_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def restart_scheduler_with_master(stack_config, master: str) -> None:
    """What an operator does: set CDC_SPARK_MASTER and restart the scheduler, whose tasks then
    resolve spark_default to that master."""
    env = {**os.environ, "CDC_STATE_DIR": str(stack_config.state_dir), "CDC_SPARK_MASTER": master,
           "PYTHONPATH": f"{stack_config.repo_root / 'include'}:{stack_config.repo_root / 'spark_jobs'}"}
    subprocess.run([sys.executable, "-m", "cdc_local.stack", "restart", "airflow-scheduler"], env=env,
                   check=True, capture_output=True, timeout=300)


@pytest.fixture
def spark_cluster(stream, stack_env, stack_config):
    cluster = spark_standalone.up(stack_config)
    pipeline_driver.stop_stream(stream, stack_env)
    restart_scheduler_with_master(stack_config, cluster.master_url)
    try:
        yield cluster
    finally:
        pipeline_driver.stop_stream(stream, stack_env)
        restart_scheduler_with_master(stack_config, names.EMBEDDED_SPARK_MASTER)
        spark_standalone.down(stack_config)


def stream_application(cluster) -> dict | None:
    apps = [a for a in cluster.master_state()["activeapps"] if a["state"] == "RUNNING"]
    return apps[0] if len(apps) == 1 else None


def test_the_stream_runs_its_tasks_on_a_standalone_worker_and_every_sink_converges_exactly(
        stream, spark_cluster, stack_env, pg, cassandra, api):
    pipeline_driver.start_stream(stream, stack_env, timeout=600)
    app = poll_until(lambda: stream_application(spark_cluster), timeout=180,
                     what="the stream registered with the standalone master")
    changes = write_workload(pg, 300, seed=71)

    assert_sinks_match_postgres(stack_env, stream, pg, cassandra)
    assert_rest_holds_each_change_once(api, changes)

    # Spark's own view: the application's executors run on the worker, and they ran its tasks.
    assert stream_application(spark_cluster)["id"] == app["id"]
    worker = spark_cluster.worker_state()
    assert [e["appid"] for e in worker["executors"]] == [app["id"]]
    executors = requests.get(f"http://{stack_env['PG_HOST']}:4040/api/v1/applications/{app['id']}/executors",
                             timeout=10).json()
    remote = [e for e in executors if e["id"] != "driver"]
    assert remote and all(e["hostPort"].startswith("127.0.0.1:") for e in remote), executors
    assert sum(e["completedTasks"] for e in remote) > 0, remote
    driver = [e for e in executors if e["id"] == "driver"]
    assert driver and driver[0]["completedTasks"] == 0, driver
