"""Credentials of the local stack, generated once into the state dir (mode 0600).

Nothing here is ever committed: a fresh state dir gets fresh credentials.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

SECRET_NAMES = (
    "postgres_superuser_password",
    "engagement_password",
    "airflow_db_password",
    "redis_password",
    "airflow_admin_password",
    "airflow_jwt_secret",
    "airflow_api_secret_key",
    "airflow_fernet_key",
    "api_token",
    "api_admin_token",
    "debezium_password",
    "cassandra_admin_password",
    "cassandra_sink_password",
    "kafka_sasl_password",
)


def _generate(name: str) -> str:
    if name == "airflow_fernet_key":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_urlsafe(24)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only from the moment the file exists:
    a fresh file is created with mode 0600 (by open(2), not a chmod after the write) and then
    renamed over ``path``, so no reader ever sees the secret under a wider mode."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def load_or_create(secrets_dir: Path) -> dict[str, str]:
    """Return every stack secret, generating (and persisting) any that is missing."""
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)  # an existing directory keeps its mode through mkdir
    path = secrets_dir / "stack-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in SECRET_NAMES if n not in stored]
    if missing:
        stored.update({n: _generate(n) for n in missing})
        write_private(path, json.dumps(stored, indent=2, sort_keys=True))
    return stored
