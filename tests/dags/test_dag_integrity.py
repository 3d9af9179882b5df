"""Every DAG parses without services, is wired the house way, and parses fast."""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))
MAX_PARSE_SECONDS = 2.0


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_dag_files_exist():
    assert DAG_FILES, "dags/ has no DAG files"


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_one_dag_per_file_named_after_it(dagbag):
    by_file = {}
    for dag in dagbag.dags.values():
        by_file.setdefault(Path(dag.fileloc).stem, []).append(dag.dag_id)
    assert by_file == {p.stem: [p.stem] for p in DAG_FILES}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_house_rules(dagbag, path):
    dag = dagbag.dags[path.stem]
    assert dag.tags, "tags missing"
    assert dag.doc_md and len(dag.doc_md.strip()) > 40, "doc_md missing or empty"
    assert dag.max_active_runs >= 1
    assert dag.catchup is False
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{task.task_id}: owner not set"
        assert task.retries is not None and task.retries >= 0
    assert any(task.retries > 0 for task in dag.tasks), "no task retries"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_file_parses_fast_and_uses_the_sdk(path):
    source = path.read_text()
    assert "from airflow.sdk import" in source
    for legacy in ("from airflow.models import DAG", "from airflow import DAG", "Variable.get("):
        assert legacy not in source, f"{path.name} uses {legacy!r}"
    import airflow.sdk  # noqa: F401 - Airflow's own import cost is not the DAG file's

    spec = importlib.util.spec_from_file_location(f"dagfile_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    start = time.perf_counter()
    spec.loader.exec_module(module)
    elapsed = time.perf_counter() - start
    assert elapsed < MAX_PARSE_SECONDS, f"{path.name} took {elapsed:.2f}s to parse"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_each_dag_shares_the_owner_and_documents_itself_with_its_module_docstring(dagbag, path):
    from cdc_platform import dag_defaults

    dag = dagbag.dags[path.stem]
    assert {task.owner for task in dag.tasks} == {dag_defaults.OWNER}
    assert "DOC = " not in path.read_text(), "doc_md=__doc__: one text, the module docstring"
    assert dag.doc_md.startswith(path.read_text().split('"""')[1].split("\n")[0])


def test_the_watchdogs_params_are_its_thresholds_with_their_defaults(dagbag):
    from dataclasses import asdict

    from cdc_platform.health.checks import Thresholds

    params = dagbag.dags["cdc_watchdog"].params
    defaults = asdict(Thresholds())
    assert {k: params[k] for k in defaults} == defaults
    assert set(params) == set(defaults) | {"auto_restart"}
    assert params.get_param("max_query_failures").schema["minimum"] == 1


def test_the_dlq_dags_params_default_to_the_dlq_rule(dagbag):
    from cdc_platform import semantics

    for dag_id in ("cdc_dlq_reprocess", "cdc_dlq_replay_parked"):
        assert dagbag.dags[dag_id].params["max_attempts"] == semantics.DLQ_MAX_ATTEMPTS
    assert dagbag.dags["cdc_dlq_reprocess"].params["base_backoff_seconds"] == semantics.DLQ_BACKOFF_S


def test_each_deadline_alert_says_the_deadline_it_has(dagbag):
    with_deadlines = [dag for dag in dagbag.dags.values() if dag.deadline]
    assert {d.dag_id for d in with_deadlines} >= {"cdc_watchdog", "cdc_reconcile", "cdc_dlq_reprocess"}
    for dag in with_deadlines:
        for alert in (dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]):
            minutes = int(alert.interval.total_seconds() // 60)
            assert alert.callback.kwargs["expected"] == f"{minutes} minutes", dag.dag_id


def test_the_manual_dags_that_act_on_data_wait_for_their_confirm_param(dagbag):
    for dag_id in ("cdc_resnapshot", "cdc_dlq_replay_parked"):
        params = dagbag.dags[dag_id].params
        assert params["confirm"] is False, dag_id
        assert params.get_param("confirm").schema["type"] == "boolean", dag_id
        assert params.get_param("confirm").description.startswith("Must be true: "), dag_id


RESNAPSHOT_STEPS = ("stop_connector", "reset_offsets", "drop_slot", "snapshot", "sweep_deleted_rows")
PROVISION_INFRASTRUCTURE = ("postgres_schema", "kafka_topics", "cassandra_schema", "redis_check")


@pytest.mark.parametrize("dag_id, tasks, edges", [
    ("cdc_resnapshot", set(RESNAPSHOT_STEPS), set(zip(RESNAPSHOT_STEPS, RESNAPSHOT_STEPS[1:]))),
    ("cdc_provision", {*PROVISION_INFRASTRUCTURE, "register_connector", "canary"},
     {(step, "register_connector") for step in PROVISION_INFRASTRUCTURE} | {("register_connector", "canary")}),
    ("cdc_dlq_replay_parked", {"replay_parked"}, set()),
])
def test_the_manual_dags_run_their_steps_in_order(dagbag, dag_id, tasks, edges):
    dag = dagbag.dags[dag_id]
    assert {task.task_id for task in dag.tasks} == tasks
    assert {(task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids} == edges
