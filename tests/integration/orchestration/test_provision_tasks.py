"""The cdc_provision task functions, run with Airflow connections against the real stack."""
import pytest

from cdc_platform.orchestration import provision

pytestmark = pytest.mark.integration


def test_provision_tasks_are_idempotent(airflow_connections):
    first = [provision.postgres_schema(), provision.kafka_topics(), provision.cassandra_schema(),
             provision.redis_check(), provision.connector()]
    second_pg, second_topics, _, redis_report, second_connector = (
        provision.postgres_schema(), provision.kafka_topics(), provision.cassandra_schema(),
        provision.redis_check(), provision.connector())
    assert first[4]["tasks"] == ["RUNNING"]
    assert second_pg == {"publication": False}
    assert second_topics["created"] == []
    assert redis_report["maxmemory-policy"] == "noeviction"
    assert second_connector["changed"] is False and second_connector["connector"] == "RUNNING"
    assert provision.canary()["seconds"] < 60
