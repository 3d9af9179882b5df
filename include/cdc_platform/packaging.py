"""The ``--py-files`` archive: the packages executors need (cdc_platform and cdc_stream).

``python -m cdc_platform.packaging OUT_DIR`` prints the path of the zip it wrote. It lives with
the Airflow side, which builds the archive per run; the job itself never imports it.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (REPO_ROOT / "include" / "cdc_platform", REPO_ROOT / "spark_jobs" / "cdc_stream")
ARCHIVE_NAME = "cdc_stream_deps.zip"
# A fixed timestamp keeps the archive byte-identical for identical sources.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def build_py_files(out_dir: str | Path) -> Path:
    """Zip both packages (each at the archive root, as imports expect) into out_dir; return the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / ARCHIVE_NAME
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for package in PACKAGES:
            if not (package / "__init__.py").exists():
                raise FileNotFoundError(f"package not found: {package}")
            # Every file, not just *.py: packages carry data files (e.g. the Redis sink's Lua scripts).
            for path in sorted(package.rglob("*")):
                if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
                    continue
                info = zipfile.ZipInfo(str(path.relative_to(package.parent)), date_time=_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes())
    tmp.replace(target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m cdc_platform.packaging OUT_DIR")
    print(build_py_files(sys.argv[1]))
