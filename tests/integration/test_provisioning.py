"""Provisioning the real pipeline is idempotent and ends with changes flowing into Kafka."""
import pytest

from cdc_platform import names
from cdc_platform.provisioning import provision_from_env

pytestmark = pytest.mark.integration


def test_provisioning_twice_changes_nothing_the_second_time(stack_env, pg_conn):
    first = provision_from_env(stack_env)
    second = provision_from_env(stack_env)

    assert first["connector"]["connector"] == "RUNNING" and first["connector"]["tasks"] == ["RUNNING"]
    assert second["postgres"] == {"publication": False}
    assert second["topics_created"] == []
    assert second["connector"]["created"] is False and second["connector"]["changed"] is False
    assert second["connector"]["tasks"] == ["RUNNING"]
    assert 0 < second["canary_seconds"] < 60

    with pg_conn.cursor() as cur:
        cur.execute("SELECT plugin, slot_type FROM pg_replication_slots WHERE slot_name = %s",
                    (names.REPLICATION_SLOT,))
        assert cur.fetchone() == ("pgoutput", "logical")
        cur.execute("SELECT relreplident FROM pg_class WHERE relname IN (%s, %s)",
                    (names.PG_EVENTS_TABLE, names.PG_CONTENT_TABLE))
        assert [r[0] for r in cur.fetchall()] == ["f", "f"]
        cur.execute("SELECT tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1",
                    (names.PUBLICATION,))
        assert {r[0] for r in cur.fetchall()} >= {names.PG_EVENTS_TABLE, names.PG_CONTENT_TABLE}


def test_debezium_streams_as_its_own_role_with_only_replication_and_read_access(stack_env, pg_conn):
    provision_from_env(stack_env)
    role = names.PG_CDC_ROLE
    with pg_conn.cursor() as cur:
        cur.execute("SELECT rolreplication, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
                    (role,))
        assert cur.fetchone() == (True, False, False, False)
        cur.execute("SELECT usename FROM pg_stat_replication JOIN pg_replication_slots s ON s.active_pid = pid "
                    "WHERE s.slot_name = %s", (names.REPLICATION_SLOT,))
        assert cur.fetchone() == (role,)
        privileges = {}
        for table in (names.PG_EVENTS_TABLE, names.PG_CONTENT_TABLE, names.PG_HEARTBEAT_TABLE):
            cur.execute("SELECT p FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) AS p "
                        "WHERE has_table_privilege(%s, %s, p)", (role, table))
            privileges[table] = [r[0] for r in cur.fetchall()]
    pg_conn.rollback()
    assert privileges == {names.PG_EVENTS_TABLE: ["SELECT"], names.PG_CONTENT_TABLE: ["SELECT"],
                          names.PG_HEARTBEAT_TABLE: ["SELECT", "UPDATE"]}
    assert role not in stack_env["PG_DSN"]  # the application connects as its own role
