"""Stopping the stream is bounded: the driver's hard stop, and which processes the operator signals."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from cdc_platform.operators.stream import APPLICATION, is_stream_driver
from cdc_stream import job

REPO = Path(__file__).resolve().parents[3]

# A driver whose stop never ends: a non-daemon thread that interpreter shutdown would join forever.
STUCK_DRIVER = textwrap.dedent("""
    import sys, threading
    sys.path[:0] = {paths!r}
    from cdc_stream import job
    threading.Thread(target=threading.Event().wait).start()
    job.arm_hard_stop({after_s})
    sys.exit(0)
""")


def run_stuck_driver(after_s: float) -> tuple[int, float, str]:
    code = STUCK_DRIVER.format(paths=[str(REPO / "include"), str(REPO / "spark_jobs")], after_s=after_s)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return done.returncode, time.monotonic() - started, done.stderr


def test_a_driver_that_cannot_stop_exits_hard_once_its_deadline_passes():
    returncode, elapsed, _ = run_stuck_driver(after_s=1.0)
    assert returncode == 3
    assert 1.0 <= elapsed < 30


def test_the_hard_stop_exits_even_when_its_output_is_gone():
    """The spark-submit JVM relays the driver's output; once it is gone, writing raises
    BrokenPipeError, which must not keep the driver from exiting."""
    code = STUCK_DRIVER.format(paths=[str(REPO / "include"), str(REPO / "spark_jobs")], after_s=1.0)
    code = code.replace("from cdc_stream import job", "from cdc_stream import job\n"
                        "import logging, os\n"
                        "logging.basicConfig()\n"
                        "read_end, write_end = os.pipe()\n"
                        "os.close(read_end)\n"
                        "os.dup2(write_end, 2)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3


def test_a_driver_whose_threads_can_never_run_again_is_ended_by_the_last_resort(tmp_path):
    """The main thread holds the GIL in a blocking C call (PyDLL does not release it), so no
    Python thread runs: faulthandler's C timer ends the process and dumps where it hung."""
    code = textwrap.dedent(f"""
        import ctypes, sys
        sys.path[:0] = {[str(REPO / "include"), str(REPO / "spark_jobs")]!r}
        from cdc_stream import job
        job.arm_hard_stop(1.0, last_resort_after_s=1.0, dump_dir={str(tmp_path)!r})
        ctypes.PyDLL(None).pause()  # blocks in C, holding the GIL, until a signal ends it
    """)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and time.monotonic() - started < 20
    [dump] = tmp_path.glob("cdc-stream-*-hard-stop.txt")
    assert "Thread" in dump.read_text()


def test_the_hard_stop_waits_for_its_deadline():
    returncode, elapsed, _ = run_stuck_driver(after_s=4.0)
    assert returncode == 3
    assert elapsed >= 4.0


def test_outside_spark_submit_the_hard_stop_kills_no_parent(monkeypatch):
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert job.spark_submit_parent() is None
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    # This test's parent is pytest's shell or runner, not a SparkSubmit JVM.
    assert job.spark_submit_parent() is None


def test_only_the_python_driver_is_told_to_stop_not_the_workers():
    # Stand-ins that block until killed; only their command lines matter.
    driver = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()", str(APPLICATION)])
    worker = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()", "pyspark.daemon"])
    try:
        assert is_stream_driver(psutil.Process(driver.pid))
        assert not is_stream_driver(psutil.Process(worker.pid))
    finally:
        for proc in (driver, worker):
            proc.kill()
            proc.wait()


SPARK_DATA_LOSS = """An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):
  File "/x/py4j/clientserver.py", line 644, in _call_proxy
    return_value = getattr(self.pool[obj_id], method)(*params)
py4j.protocol.Py4JJavaError: An error occurred while calling o123.save.
: org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 in stage 5.0 failed 1 times, most recent failure: Lost task 0.0 in stage 5.0 (TID 7) (127.0.0.1 executor driver): org.apache.spark.SparkException: [KAFKA_DATA_LOSS.COULD_NOT_READ_OFFSET_RANGE] Some data may have been lost because they are not available in Kafka any more;
either the data was aged out by Kafka or the topic may have been deleted before all the data in the
\tat org.apache.spark.sql.kafka010.KafkaExceptions$.couldNotReadOffsetRange(KafkaExceptions.scala:60)
"""
PYTHON_SINK_ERROR = """[STREAM_FAILED] Query [id = 1, runId = 2] terminated with exception: An exception was raised by the Python Proxy.
Traceback (most recent call last):
  File "/x/cdc_stream/redis_sink.py", line 80, in write_batch
py4j.protocol.Py4JJavaError: An error occurred while calling o9.collect.
redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused.
"""


def test_a_failures_cause_is_the_line_that_says_what_happened():
    assert job.error_cause(SPARK_DATA_LOSS).startswith(
        "[KAFKA_DATA_LOSS.COULD_NOT_READ_OFFSET_RANGE] Some data may have been lost")
    assert job.error_cause(PYTHON_SINK_ERROR) == (
        "redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    assert job.error_cause("query stopped") == "query stopped"


class FakeQuery:
    """What SupervisedQuery reads of a StreamingQuery."""

    def __init__(self, active: bool, error: str | None = None):
        self.isActive = active
        self._error = error
        self.recentProgress: list[dict] = []
        self.name = "core"

    @property
    def lastProgress(self) -> dict | None:
        return self.recentProgress[-1] if self.recentProgress else None

    def exception(self):
        return self._error


def test_a_failure_report_stays_until_the_restarted_query_runs_a_batch(tmp_path):
    from cdc_platform import names
    from cdc_stream.config import JobConfig, SinkSettings

    config = JobConfig(settings=SinkSettings("b:1", "h", 1), checkpoint_root=str(tmp_path))
    queries = [FakeQuery(True), FakeQuery(True)]
    supervised = job.SupervisedQuery("core", lambda: queries.pop(0), config, job.BatchReports())
    report = tmp_path / names.STREAM_PROGRESS_DIR / "core.failure.json"
    supervised.poll(0.0)
    first = supervised.query
    first.isActive, first._error = False, "[KAFKA_DATA_LOSS.X] Some data may have been lost"
    supervised.poll(1.0)
    assert report.exists()
    supervised.poll(10.0)  # restarted after its backoff, no batch yet: still failing for whoever looks
    assert supervised.query is not None and report.exists()
    supervised.query.recentProgress = [{"timestamp": "2026-11-27T12:00:00", "batchId": 7, "numInputRows": 3}]
    supervised.poll(11.0)
    assert not report.exists()
