"""The Debezium connector config: tuning in include/connectors/*.json, names from names.py.

Placeholders ``@NAME@`` are filled here; the password stays a Connect config-provider
reference (``${file:...}``) so it never enters Connect's config topic or its REST API.
"""
from __future__ import annotations

import json
from pathlib import Path

from cdc_platform import names, semantics
from cdc_platform.cluster import ClusterSettings

TEMPLATE = Path(__file__).resolve().parents[1] / "connectors" / f"{names.CONNECTOR_NAME}.json"


def render(pg_host: str, pg_port: int, pg_user: str, password_ref: str,
           template: Path = TEMPLATE, settings: ClusterSettings | None = None) -> dict[str, str]:
    """``password_ref`` is a Connect config-provider reference such as ``${file:/path:key}``."""
    settings = settings or ClusterSettings.from_env()
    if not password_ref.startswith("${"):
        raise ValueError("the database password must be a config-provider reference, not a literal secret")
    values = {
        "PG_HOST": pg_host,
        "PG_PORT": str(pg_port),
        "PG_USER": pg_user,
        "PG_DATABASE": names.PG_DATABASE,
        "DATABASE_PASSWORD_REF": password_ref,
        "TOPIC_PREFIX": names.TOPIC_PREFIX,
        "REPLICATION_SLOT": names.REPLICATION_SLOT,
        "PUBLICATION": names.PUBLICATION,
        "PG_HEARTBEAT_TABLE": names.PG_HEARTBEAT_TABLE,
        "UNAVAILABLE_VALUE_PLACEHOLDER": semantics.UNAVAILABLE_VALUE_PLACEHOLDER,
        "OVERSIZED_VALUE_PLACEHOLDER": semantics.OVERSIZED_VALUE_PLACEHOLDER,
        "MAX_CAPTURED_VALUE_BYTES": str(semantics.MAX_CAPTURED_VALUE_BYTES),
        "MAX_MESSAGE_BYTES": str(semantics.MAX_MESSAGE_BYTES),
        "KAFKA_REPLICATION_FACTOR": str(settings.kafka_replication_factor),
        "KAFKA_EVENT_PARTITIONS": str(settings.kafka_event_partitions),
        "TABLE_INCLUDE_LIST": ",".join(
            f"public.{t}" for t in (names.PG_CONTENT_TABLE, names.PG_EVENTS_TABLE, names.PG_HEARTBEAT_TABLE)
        ),
    }
    config = json.loads(template.read_text())
    rendered = {}
    for key, value in config.items():
        for name, replacement in values.items():
            value = value.replace(f"@{name}@", replacement)
        if "@" in value and "@" in value.split("@", 1)[1]:
            raise ValueError(f"unfilled placeholder in connector config {key}={value}")
        rendered[key] = value
    return rendered
