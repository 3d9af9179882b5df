"""The job's packages as a wheel: cdc_platform (the library Airflow and Spark share) and cdc_stream.

What the wheel holds is pyproject.toml's to say; this module only builds it, offline, with the
interpreter's own pip and setuptools. ``python -m cdc_platform.packaging OUT_DIR`` prints the path
of the ``--py-files`` archive it wrote, ``--wheel OUT_DIR`` that of the wheel itself (``make
wheel``: dist/, to pip install on cluster nodes). It lives with the Airflow side, which builds the
archive at each stream start; the job itself never imports it.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the build reads: the project file and the source roots it maps the packages from.
SOURCES = ("pyproject.toml", "include/cdc_platform", "spark_jobs/cdc_stream")
# The wheel's entries get this timestamp (1980-01-01, the earliest a zip holds), so identical
# sources give a byte-identical wheel.
SOURCE_DATE_EPOCH = "315532800"


def build_wheel(out_dir: str | Path) -> Path:
    """Build the wheel into out_dir; return its path."""
    return _build_as(out_dir, ".whl")


def build_py_files(out_dir: str | Path) -> Path:
    """The wheel for --py-files, named .zip: Spark puts only .zip, .egg and .jar py-files on the
    executors' sys.path, and a pure-Python wheel is a zip that zipimport reads as it is."""
    return _build_as(out_dir, ".zip")


def _build_as(out_dir: str | Path, suffix: str) -> Path:
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".build-") as work:
        built = _build(Path(work))
        return _place(built, out / f"{built.stem}{suffix}")


def _build(work: Path) -> Path:
    """pip builds a local directory in place, and setuptools' build/ there would be shared by
    concurrent runs and keep modules since deleted from the sources: so each build gets a fresh
    copy of the sources."""
    source = work / "source"
    for relative in SOURCES:
        origin = REPO_ROOT / relative
        if origin.is_dir():
            shutil.copytree(origin, source / relative, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
        elif origin.is_file():
            (source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / relative)
        else:
            raise FileNotFoundError(f"not found: {origin} (the wheel is built from the repository)")
    wheels = work / "wheels"
    # --no-build-isolation and --no-index: the build uses the installed setuptools and wheel
    # (requirements.txt) and never reaches a package index.
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--wheel-dir", str(wheels), str(source)]
    result = subprocess.run(command, cwd=work, capture_output=True, text=True,
                            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
    if result.returncode != 0:
        raise RuntimeError(f"building the wheel failed ({' '.join(command)}):\n{result.stdout}{result.stderr}")
    (wheel,) = wheels.glob("*.whl")
    return wheel


def _place(built: Path, target: Path) -> Path:
    """Move the build over target in one rename, atomic since both are on out_dir's file system
    (a concurrent run sees the old file or the new one, never part of one); an identical file
    stays as it is."""
    if not (target.is_file() and filecmp.cmp(built, target, shallow=False)):
        os.replace(built, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cdc_platform.packaging", description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", action="store_true", help="write the .whl itself, not the --py-files archive")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    print((build_wheel if args.wheel else build_py_files)(args.out_dir))


if __name__ == "__main__":
    main()
