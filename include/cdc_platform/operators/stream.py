"""SparkSubmitOperator for the CDC stream: submission config resolved at run time from connections."""
from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

from cdc_platform import connections as conn_ids
from cdc_platform import names
from cdc_platform.polling import wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
APPLICATION = REPO_ROOT / "spark_jobs" / "spark_cdc_multi_sink.py"
# Used when no local connector jars are configured (a cluster resolving from Maven).
KAFKA_CONNECTOR_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"
GRACEFUL_STOP_SECONDS = 60
# The driver JVM plans a micro-batch every second or two, for as long as it runs: Catalyst's rules,
# code generation and closure cleaning reach new hot methods for minutes, and C2 recompiling them
# took half of the driver's CPU at a trickle (JFR and per-thread /proc figures: the compiler
# threads 0.14 of 0.30 cores at 20 changes/s, 8 minutes after start). C1 alone compiles them
# for a fraction of that, and its code was as fast on a 1,000 changes/s load (0.71-0.85 ms of
# Spark CPU per change against 0.76 ms). Executors of a cluster keep both tiers: they run the rows.
DRIVER_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"


def stream_submission(checkpoint_root: str | None, trigger_seconds: float, sinks: str,
                      starting_offsets: str = "earliest", kafka_conn_id: str = conn_ids.KAFKA_CONN_ID,
                      cassandra_conn_id: str = conn_ids.CASSANDRA_SINK_CONN_ID,
                      redis_conn_id: str = conn_ids.REDIS_CONN_ID,
                      rest_api_conn_id: str = conn_ids.REST_API_CONN_ID) -> dict:
    """Arguments, environment and jars for spark-submit, from Airflow connections.

    Secrets (the Cassandra sink's password, the Redis password, the API token, the Kafka
    connection's SASL and TLS settings) travel in the environment, never on the command line.
    The whole Kafka connection reaches the job, so every Kafka client it opens connects as the
    Airflow tasks' clients do.
    """
    from cdc_platform.cluster import ClusterSettings
    from cdc_platform.hooks.cassandra import cassandra_endpoint_and_credentials
    from cdc_platform.hooks.http import base_url_and_token
    from cdc_platform.hooks.kafka import kafka_config
    from cdc_platform.hooks.redis import redis_url
    from cdc_platform.kafka_clients import CLIENT_CONFIG_ENV, encode_client_config

    from cdc_platform.state_paths import checkpoint_root as default_checkpoint_root

    checkpoint_root = checkpoint_root or default_checkpoint_root()
    cassandra_host, cassandra_port, cassandra_user, cassandra_password = \
        cassandra_endpoint_and_credentials(cassandra_conn_id)
    api_url, api_token = base_url_and_token(rest_api_conn_id)
    try:
        kafka = encode_client_config(kafka_config(kafka_conn_id))
    except ValueError as exc:
        raise ValueError(f"the Kafka connection {kafka_conn_id!r} cannot be passed to the Spark job: {exc}") from exc
    args = [
        "--checkpoint-root", checkpoint_root,
        "--cassandra-host", cassandra_host,
        "--cassandra-port", str(cassandra_port),
        *(["--cassandra-user", cassandra_user] if cassandra_user else []),
        "--api-url", api_url,
        "--sinks", sinks,
        "--trigger-seconds", str(trigger_seconds),
        "--starting-offsets", starting_offsets,
        "--cassandra-consistency", ClusterSettings.from_env().cassandra_consistency,
    ]
    env = {"REDIS_URL": redis_url(redis_conn_id), "API_TOKEN": api_token or "",
           "CASSANDRA_SINK_PASSWORD": cassandra_password or "", CLIENT_CONFIG_ENV: kafka}
    for key in ("PYSPARK_PYTHON", "SPARK_HOME", "JAVA_HOME", "PATH"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    jars = os.environ.get("SPARK_KAFKA_JARS") or None
    return {"application_args": args, "env_vars": env, "jars": jars,
            "packages": None if jars else KAFKA_CONNECTOR_PACKAGE}


class CdcStreamSubmitOperator(SparkSubmitOperator):
    """Runs the long-lived streaming job; a kill stops its queries gracefully first."""

    def __init__(self, *, checkpoint_root: str | None = None, trigger_seconds: float = 0.5,
                 sinks: str = ",".join(names.STREAM_SINKS), starting_offsets: str = "earliest",
                 spark_conn_id: str = conn_ids.SPARK_CONN_ID, **kwargs):
        kwargs.setdefault("name", "cdc-stream")
        # The job's own Spark settings (cdc_stream.config.STREAM_SPARK_CONF) are set by the job
        # when it builds its session; these are about running under spark-submit.
        kwargs.setdefault("conf", {"spark.ui.showConsoleProgress": "false",
                                   "spark.log.level": "WARN",
                                   "spark.driver.extraJavaOptions": DRIVER_JAVA_OPTIONS})
        kwargs.setdefault("driver_memory", "1g")
        super().__init__(application=str(APPLICATION), conn_id=spark_conn_id, **kwargs)
        self.checkpoint_root = checkpoint_root
        self.trigger_seconds = trigger_seconds
        self.sinks = sinks
        self.starting_offsets = starting_offsets

    def execute(self, context):
        submission = stream_submission(self.checkpoint_root, self.trigger_seconds, self.sinks,
                                       self.starting_offsets)
        self.application_args = submission["application_args"]
        self.env_vars = {**(self.env_vars or {}), **submission["env_vars"]}
        self.jars = submission["jars"]
        self.packages = submission["packages"]
        self.py_files = build_py_files()
        self.apply_cluster_resources()
        if os.environ.get("PYSPARK_PYTHON"):
            # Executors must run an interpreter that has the sinks' client libraries.
            self.conf = {**(self.conf or {}), "spark.pyspark.python": os.environ["PYSPARK_PYTHON"]}
        return super().execute(context)

    def apply_cluster_resources(self, environ=None) -> None:
        """Executor resources from the cluster settings of the worker running this task (not
        of the DAG processor): SparkSubmitOperator keeps its constructor's values in these
        attributes and hands them to its hook."""
        from cdc_platform.cluster import ClusterSettings

        for name, value in ClusterSettings.from_env(environ).spark_submit_resources().items():
            setattr(self, f"_{name}", value)

    def on_kill(self) -> None:
        # The provider's kill is a SIGKILL; the driver is first told to stop between batches. The
        # hook exposes spark-submit's process only as _submit_sp (tests/unit/operators guard it).
        hook = self._hook
        process = getattr(hook, "_submit_sp", None) if hook else None
        if process is not None and process.poll() is None:
            stop_gracefully(process.pid, GRACEFUL_STOP_SECONDS, self.log)
        super().on_kill()


def build_py_files() -> str:
    from cdc_platform.packaging import build_py_files as build

    out_dir = Path(os.environ.get("CDC_STATE_DIR", tempfile.gettempdir())) / "run" / "pyfiles"
    return str(build(out_dir))


def is_stream_driver(proc) -> bool:
    import psutil

    try:
        return "python" in proc.name().lower() and any(APPLICATION.name in arg for arg in proc.cmdline())
    except psutil.Error:
        return False


def stop_gracefully(pid: int, timeout: float, log) -> bool:
    """SIGTERM the Python driver under spark-submit (it stops its queries between batches),
    then wait for spark-submit to exit. Returns True when it exited in time."""
    import psutil

    try:
        root = psutil.Process(pid)
        # The Python driver only: the PySpark workers under it run tasks, and a worker killed
        # mid-task fails the batch that the driver is letting finish.
        drivers = [p for p in root.children(recursive=True) if is_stream_driver(p)]
    except psutil.NoSuchProcess:
        return True
    for proc in drivers or [root]:
        log.info("stopping stream gracefully: SIGTERM to pid %s", proc.pid)
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    try:
        wait_until(lambda: not root.is_running() or root.status() == psutil.STATUS_ZOMBIE, timeout, 0.5,
                   "spark-submit to exit")
        return True
    except TimeoutError:
        log.warning("stream did not stop within %.0fs; killing spark-submit", timeout)
        return False
