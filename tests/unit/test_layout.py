"""The package map of the README, enforced: who may import whom (read from the source, so a
lazy import inside a function counts too)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "include" / "cdc_platform"


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def offenders(paths, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in paths:
        bad = sorted(n for n in imported(path) if n.split(".")[0] in forbidden or n.startswith(forbidden))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_the_shared_library_never_imports_the_spark_job():
    assert offenders(modules(LIBRARY), ("cdc_stream",)) == {}


def test_the_shared_library_never_imports_the_local_side():
    assert offenders(modules(LIBRARY), ("cdc_local",)) == {}


def test_the_dags_and_plugins_never_import_the_local_side():
    assert offenders(modules(ROOT / "dags") + modules(ROOT / "plugins"), ("cdc_local",)) == {}


def test_the_spark_job_imports_neither_airflow_nor_the_orchestration_side_nor_the_local_side():
    forbidden = ("airflow", "cdc_local", "cdc_platform.orchestration", "cdc_platform.operators",
                 "cdc_platform.hooks")
    assert offenders(modules(ROOT / "spark_jobs"), forbidden) == {}


def top_level_imports(path: Path) -> set[str]:
    """What a module imports when it is loaded (its body, not its functions)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "dags").glob("*.py")), ids=lambda p: p.stem)
def test_dag_files_load_only_the_sdk_the_defaults_the_operators_and_the_notifier(path):
    """What a DAG file loads at parse time; each task imports its one orchestration function
    inside its body, when it runs."""
    allowed = ("__future__.", "datetime.", "airflow.sdk.", "cdc_alerting.", "cdc_platform.dag_defaults",
               "cdc_platform.operators.", "cdc_platform.connections")
    assert sorted(n for n in top_level_imports(path) if not n.startswith(allowed)) == []
