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
)


def _generate(name: str) -> str:
    if name == "airflow_fernet_key":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_urlsafe(24)


def load_or_create(secrets_dir: Path) -> dict[str, str]:
    """Return every stack secret, generating (and persisting) any that is missing."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    path = secrets_dir / "stack-secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in SECRET_NAMES if n not in stored]
    if missing:
        stored.update({n: _generate(n) for n in missing})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2, sort_keys=True))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return stored
