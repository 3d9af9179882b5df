"""The source tables' columns the platform reads: the contract between PostgreSQL and the stream.

The stream's Spark schemas (cdc_stream.schemas) are built from these columns, and the watchdog
compares PostgreSQL's catalog with them. A column added to a captured table is otherwise
ignored by the stream without a word, and a dropped column that a change needs quarantines
every change of its table; both are reported as schema drift instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdc_platform import names

# (column, PostgreSQL type as information_schema.columns.data_type names it)
EVENTS_COLUMNS = (
    ("id", "integer"),
    ("content_id", "uuid"),
    ("user_id", "uuid"),
    ("event_type", "text"),
    ("event_ts", "timestamp without time zone"),
    ("duration_ms", "integer"),
    ("device", "text"),
    ("raw_payload", "jsonb"),
)
CONTENT_COLUMNS = (
    ("id", "uuid"),
    ("slug", "text"),
    ("title", "text"),
    ("content_type", "text"),
    ("length_seconds", "integer"),
    ("publish_ts", "timestamp without time zone"),
)
CAPTURED_TABLES = {names.PG_EVENTS_TABLE: EVENTS_COLUMNS, names.PG_CONTENT_TABLE: CONTENT_COLUMNS}


@dataclass(frozen=True)
class TableDrift:
    added: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = field(default=())  # (column, expected type, actual type)

    def __bool__(self) -> bool:
        return bool(self.added or self.dropped or self.retyped)


def table_drift(expected: tuple[tuple[str, str], ...], actual: dict[str, str]) -> TableDrift:
    """How ``actual`` (column -> type, as PostgreSQL reports it) differs from the contract."""
    want = dict(expected)
    return TableDrift(
        added=tuple(sorted(set(actual) - set(want))),
        dropped=tuple(c for c, _ in expected if c not in actual),
        retyped=tuple((c, t, actual[c]) for c, t in expected if c in actual and actual[c] != t),
    )


def read_columns(pg_conn, tables=tuple(CAPTURED_TABLES)) -> dict[str, dict[str, str]]:
    """The captured tables' columns and types as PostgreSQL holds them now (schema public)."""
    with pg_conn.cursor() as cur:
        cur.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name = ANY(%s) ORDER BY table_name, ordinal_position",
                    (list(tables),))
        rows = cur.fetchall()
    pg_conn.rollback()
    columns: dict[str, dict[str, str]] = {table: {} for table in tables}
    for table, column, data_type in rows:
        columns[table][column] = data_type
    return columns


def schema_drift(pg_conn) -> dict[str, TableDrift]:
    """Every captured table whose columns differ from the contract, with how."""
    actual = read_columns(pg_conn)
    drift = {table: table_drift(expected, actual[table]) for table, expected in CAPTURED_TABLES.items()}
    return {table: d for table, d in drift.items() if d}
