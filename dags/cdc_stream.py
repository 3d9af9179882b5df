"""Run the CDC streaming job (Spark Structured Streaming) for as long as the DAG is unpaused.

### cdc_stream
Submits `spark_jobs/spark_cdc_multi_sink.py` with `spark-submit` against the `spark_default`
connection (`local[2]` in the local stack; a `spark://`, `k8s://` or `yarn` master works by
changing only the connection). Kafka, Cassandra, Redis and REST API details come from their
Airflow connections; secrets travel in the environment, not on the command line.

* **Long-running**: PySpark in client mode, so this task lives as long as the stream.
  The schedule is `@continuous` with one active run: when the job stops or dies, a new run
  starts it again, resuming from its per-sink checkpoints (no data lost or duplicated).
* **Stop** the stream by **pausing the DAG**, then marking the running task failed: the
  operator sends SIGTERM to the driver, which stops its queries between micro-batches.
* Task-token expiry (apache/airflow#67939) is avoided by the stack's long
  `execution_api.jwt_expiration_time`.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag

from cdc_platform import dag_defaults

from cdc_alerting import WebhookAlertNotifier
from cdc_platform.operators.stream import CdcStreamSubmitOperator


@dag(
    dag_id="cdc_stream",
    schedule="@continuous",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cdc", "streaming"],
    default_args=dag_defaults.default_args(
        retries=3,
        retry_delay=timedelta(seconds=15),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(minutes=5),
        on_failure_callback=WebhookAlertNotifier(title="CDC stream stopped")),
)
def cdc_stream():
    CdcStreamSubmitOperator(task_id="run_stream", execution_timeout=None)


cdc_stream()
