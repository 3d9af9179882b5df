"""The stream operator through the provider's SparkSubmitHook, with a stand-in spark-submit: the
command line and environment it is given, and how a kill reaches the driver. No Spark, no services."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from cdc_platform import connections as conn_ids
from cdc_platform.kafka_clients import CLIENT_CONFIG_ENV
from cdc_platform.operators.stream import (APPLICATION, DRIVER_JAVA_OPTIONS, CdcStreamSubmitOperator,
                                          stream_submission)
from tests.polling import poll_until

SECRETS = {"sink": "sink-secret", "redis": "redis-secret", "api": "api-secret", "kafka": "kafka-secret"}
KAFKA_EXTRA = {"bootstrap.servers": "kafka.test:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
               "sasl.username": "cdc", "sasl.password": SECRETS["kafka"], "ssl.ca.location": "/etc/kafka/ca.pem"}
CONNECTIONS = {
    conn_ids.SPARK_CONN_ID: {"conn_type": "spark", "host": "local[1]"},
    conn_ids.KAFKA_CONN_ID: {"conn_type": "kafka", "extra": KAFKA_EXTRA},
    conn_ids.CASSANDRA_SINK_CONN_ID: {"conn_type": "cassandra", "host": "cassandra.test", "port": 9042,
                                      "login": "cdc_sink", "password": SECRETS["sink"]},
    conn_ids.REDIS_CONN_ID: {"conn_type": "redis", "host": "redis.test", "port": 6379,
                             "password": SECRETS["redis"]},
    conn_ids.REST_API_CONN_ID: {"conn_type": "http", "host": "api.test", "port": 8090,
                                "password": SECRETS["api"]},
}

# Records how it was called, runs a stand-in driver (a Python process with the stream's entry
# point on its command line, as spark-submit's driver has) and exits when the driver does.
FAKE_SPARK_SUBMIT = textwrap.dedent("""\
    #!{python}
    import json, os, subprocess, sys
    driver = subprocess.Popen([sys.executable, "-c", os.environ["FAKE_DRIVER_CODE"], {application!r}])
    record = {{"argv": sys.argv[1:], "pid": os.getpid(), "driver_pid": driver.pid,
               "env": {{k: os.environ.get(k) for k in ("API_TOKEN", "CASSANDRA_SINK_PASSWORD", "REDIS_URL",
                                                        {client_config_env!r})}}}}
    with open({record!r} + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace({record!r} + ".tmp", {record!r})
    status = driver.wait()
    with open({driver_status!r}, "w") as f:
        f.write(str(status))
""")


class FakeSparkSubmit:
    def __init__(self, tmp_path: Path):
        self.record_path = tmp_path / "spark-submit.json"
        self.driver_status_path = tmp_path / "driver-status"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        script = bin_dir / "spark-submit"
        script.write_text(FAKE_SPARK_SUBMIT.format(python=sys.executable, application=str(APPLICATION),
                                                   client_config_env=CLIENT_CONFIG_ENV,
                                                   record=str(self.record_path),
                                                   driver_status=str(self.driver_status_path)))
        script.chmod(0o755)
        self.bin_dir = bin_dir

    def record(self, timeout: float = 30) -> dict:
        """How it was called, once its driver runs."""
        poll_until(self.record_path.exists, timeout, "the stand-in spark-submit to start its driver")
        return json.loads(self.record_path.read_text())

    def driver_status(self) -> int:
        return int(self.driver_status_path.read_text())


@pytest.fixture
def spark_submit(tmp_path, monkeypatch) -> FakeSparkSubmit:
    fake = FakeSparkSubmit(tmp_path)
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CDC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SPARK_KAFKA_JARS", raising=False)
    for conn_id, conn in CONNECTIONS.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return fake


class Submission:
    """The operator's execute, run in a thread as the task runner runs it."""

    def __init__(self, operator: CdcStreamSubmitOperator):
        self.operator = operator
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.operator.execute({})
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def wait(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the submission did not end within {timeout:.0f}s: its driver runs on"
        if self.error:
            raise self.error


def end(record: dict) -> None:
    """Leaves no stand-in behind, whatever the test did (and kills nothing else that got its pid)."""
    for pid in (record["driver_pid"], record["pid"]):
        try:
            process = psutil.Process(pid)
            if any(str(APPLICATION) in arg or arg.endswith("/bin/spark-submit") for arg in process.cmdline()):
                process.kill()
        except psutil.Error:
            pass


def test_a_kill_tells_the_driver_to_stop_and_spark_submit_exits_on_its_own(spark_submit, monkeypatch):
    monkeypatch.setenv("FAKE_DRIVER_CODE", "import signal; signal.pause()")
    operator = CdcStreamSubmitOperator(task_id="run_stream")
    submission = Submission(operator)
    record = spark_submit.record()
    try:
        # on_kill finds spark-submit through this attribute of the provider's hook.
        process = getattr(operator._hook, "_submit_sp", None)
        assert process is not None and process.pid == record["pid"], (
            "SparkSubmitHook no longer keeps spark-submit's process in _submit_sp: on_kill would "
            "skip the graceful stop and the provider would SIGKILL spark-submit mid-batch")
        operator.on_kill()
        submission.wait()
    finally:
        end(record)
    assert spark_submit.driver_status() == -15  # SIGTERM, the driver's cue to stop between batches


def submitted(spark_submit: FakeSparkSubmit, monkeypatch) -> dict:
    """How the operator called spark-submit, with a driver that ends at once."""
    monkeypatch.setenv("FAKE_DRIVER_CODE", "pass")
    submission = Submission(CdcStreamSubmitOperator(task_id="run_stream"))
    record = spark_submit.record()
    try:
        submission.wait()
    finally:
        end(record)
    return record


def test_secrets_reach_spark_submit_in_its_environment_never_on_its_command_line(spark_submit, monkeypatch):
    record = submitted(spark_submit, monkeypatch)
    command_line = " ".join(record["argv"])
    assert [secret for secret in SECRETS.values() if secret in command_line] == []
    assert record["env"]["API_TOKEN"] == SECRETS["api"]
    assert record["env"]["CASSANDRA_SINK_PASSWORD"] == SECRETS["sink"]
    assert SECRETS["redis"] in record["env"]["REDIS_URL"]
    # The whole Kafka connection, SASL and TLS included, for every Kafka client of the job.
    assert json.loads(record["env"][CLIENT_CONFIG_ENV]) == KAFKA_EXTRA
    argv = record["argv"]
    assert "--bootstrap" not in argv
    # The driver's JVM options reach spark-submit, which starts the driver JVM with them.
    assert f"spark.driver.extraJavaOptions={DRIVER_JAVA_OPTIONS}" in argv
    assert argv[argv.index("--cassandra-user") + 1] == "cdc_sink"
    assert argv[argv.index("--master") + 1] == "local[1]"


def test_the_cluster_resources_of_the_worker_reach_spark_submits_command_line(spark_submit, monkeypatch):
    monkeypatch.setenv("CDC_SPARK_EXECUTOR_MEMORY", "4g")
    monkeypatch.setenv("CDC_SPARK_EXECUTOR_CORES", "4")
    monkeypatch.setenv("CDC_SPARK_TOTAL_EXECUTOR_CORES", "12")
    argv = submitted(spark_submit, monkeypatch)["argv"]
    flags = {flag: argv[argv.index(flag) + 1] for flag in
             ("--executor-memory", "--executor-cores", "--total-executor-cores", "--py-files")}
    assert (flags["--executor-memory"], flags["--executor-cores"], flags["--total-executor-cores"]) == ("4g", "4", "12")
    assert Path(flags["--py-files"]).is_file()


def test_a_kafka_connection_with_a_resolved_callback_is_refused_by_name(spark_submit, monkeypatch):
    # The provider resolves allow-listed callbacks to functions of the worker's interpreter: the
    # driver, another process, could not call them, and would connect without them.
    monkeypatch.setenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", "json.dumps")
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_ids.KAFKA_CONN_ID.upper()}", json.dumps(
        {"conn_type": "kafka", "extra": {**KAFKA_EXTRA, "error_cb": "json.dumps"}}))
    with pytest.raises(ValueError, match=f"{conn_ids.KAFKA_CONN_ID}.*error_cb"):
        stream_submission("/ckpt", 0.5, "cassandra")
