"""The job's wheel (cdc_platform.packaging, pyproject.toml), built for real: what it holds, what it
declares, and that executors can import the packages from the --py-files archive alone."""
from __future__ import annotations

import ast
import base64
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cdc_platform import packaging

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOTS = (ROOT / "include" / "cdc_platform", ROOT / "spark_jobs" / "cdc_stream")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return packaging.build_py_files(tmp_path_factory.mktemp("py_files"))


def members(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        return set(zf.namelist())


def dist_info(path: Path) -> str:
    (name,) = {m.split("/")[0] for m in members(path) if m.split("/")[0].endswith(".dist-info")}
    return name


def metadata(path: Path) -> list[tuple[str, str]]:
    with zipfile.ZipFile(path) as zf:
        text = zf.read(f"{dist_info(path)}/METADATA").decode()
    headers = text.split("\n\n", 1)[0]
    return [tuple(line.split(": ", 1)) for line in headers.splitlines()]


def source_files() -> set[str]:
    return {str(p.relative_to(root.parent)) for root in PACKAGE_ROOTS for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")}


def test_the_archive_is_the_projects_wheel_under_a_zip_name(archive):
    assert archive.suffix == ".zip" and zipfile.is_zipfile(archive)
    headers = dict(metadata(archive))
    assert headers["Name"] == "cdc-platform"
    assert archive.name == f"cdc_platform-{headers['Version']}-py3-none-any.zip"
    assert dist_info(archive) == f"cdc_platform-{headers['Version']}.dist-info"
    with zipfile.ZipFile(archive) as zf:
        assert "Root-Is-Purelib: true" in zf.read(f"{dist_info(archive)}/WHEEL").decode()


def test_every_member_is_in_the_record_with_its_hash_and_size(archive):
    record_name = f"{dist_info(archive)}/RECORD"
    with zipfile.ZipFile(archive) as zf:
        rows = {line.split(",")[0]: line.split(",")[1:] for line in zf.read(record_name).decode().splitlines()}
        assert set(rows) == members(archive)
        for name, (digest, size) in rows.items():
            if name == record_name:
                continue
            data = zf.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, size) == (f"sha256={expected}", str(len(data))), name


def test_the_wheel_holds_every_file_of_both_packages_and_nothing_else(archive):
    shipped = {m for m in members(archive) if not m.startswith(dist_info(archive) + "/")}
    assert shipped == source_files()
    assert {"cdc_platform/__init__.py", "cdc_stream/__init__.py", "cdc_platform/aggregates/apply_changes.lua",
            "cdc_platform/aggregates/repair_fences.lua"} <= shipped
    assert [m for m in shipped if m.split("/")[0] not in ("cdc_platform", "cdc_stream")] == []
    assert [m for m in shipped if "__pycache__" in m or m.endswith((".pyc", ".pyo"))] == []


def test_executors_import_the_packages_and_their_lua_from_the_archive_alone(archive, tmp_path):
    """Only the archive on the path (not include/ or spark_jobs/), as on an executor; the
    interpreter's site-packages provide the dependencies."""
    probe = (
        "import json, sys\n"
        "import cdc_stream.transforms, cdc_stream.job\n"
        "from cdc_platform.aggregates import store\n"
        "print(json.dumps({'files': [cdc_stream.transforms.__file__, cdc_stream.job.__file__, store.__file__],\n"
        "                  'script': store.APPLY_SCRIPT,\n"
        "                  'airflow': sorted(m for m in sys.modules if m.split('.')[0] == 'airflow')}))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(archive)
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert [f for f in loaded["files"] if not f.startswith(f"{archive}{os.sep}")] == []
    assert loaded["script"] == (PACKAGE_ROOTS[0] / "aggregates" / "apply_changes.lua").read_text()
    assert loaded["airflow"] == []


def _job_imports() -> set[str]:
    """The module names the job's modules import when they load (their bodies, what importing
    them on an executor needs), following the library modules they reach."""
    library = PACKAGE_ROOTS[0].parent
    todo = sorted(PACKAGE_ROOTS[1].rglob("*.py"))
    seen, names = set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            names.update(found)
            for name in found:
                if name.split(".")[0] == "cdc_platform":
                    base = library.joinpath(*name.split("."))
                    todo += [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()]
    return names


def test_the_wheel_requires_what_the_job_imports_pinned_by_the_stack_and_neither_airflow_nor_pyspark(archive):
    third_party = {n.split(".")[0] for n in _job_imports()} - set(sys.stdlib_module_names) \
        - {"__future__", "cdc_platform", "cdc_stream"}
    assert "airflow" not in third_party and "pyspark" in third_party
    distributions = importlib.metadata.packages_distributions()
    # The cluster provides pyspark.
    needed = {dist.lower().replace("_", "-") for name in third_party - {"pyspark"} for dist in distributions[name]}
    required = {value for key, value in metadata(archive) if key == "Requires-Dist"}
    assert required == needed
    requirements = (ROOT / "requirements.txt").read_text()
    assert [d for d in required if not re.search(rf"^{re.escape(d)}==", requirements, flags=re.M)] == []


def test_a_rebuild_of_identical_sources_leaves_the_shipped_file_as_it_is(archive):
    before = archive.read_bytes(), archive.stat().st_mtime_ns
    assert packaging.build_py_files(archive.parent) == archive
    assert (archive.read_bytes(), archive.stat().st_mtime_ns) == before
    assert [p.name for p in archive.parent.iterdir()] == [archive.name]  # no build left behind


def test_the_command_make_wheel_runs_writes_the_same_bytes_as_the_archive(archive, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(root.parent) for root in PACKAGE_ROOTS))
    result = subprocess.run([sys.executable, "-m", "cdc_platform.packaging", "--wheel", str(tmp_path / "dist")],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    wheel = Path(result.stdout.strip())
    assert wheel == tmp_path / "dist" / f"{archive.stem}.whl"
    assert wheel.read_bytes() == archive.read_bytes()
