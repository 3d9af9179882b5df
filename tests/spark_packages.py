"""The job's packages shipped to a test SparkSession's Python workers as production ships them."""
from __future__ import annotations

import uuid
from pathlib import Path

from cdc_platform.packaging import build_py_files


def ship_packages(context, build_dir: Path) -> Path:
    """Add the wheel archive (cdc_platform.packaging) to the context's py-files; return it. A name
    of its own: Spark refuses a second file of one name from another path, and tests share a session."""
    archive = build_py_files(build_dir)
    shipped = archive.rename(archive.with_name(f"{archive.stem}-{uuid.uuid4().hex[:8]}.zip"))
    context.addPyFile(str(shipped))
    return shipped
