"""The stream's Kafka settings against a broker that requires a login: the stack's listener on
KAFKA_SASL_BOOTSTRAP takes SASL/PLAIN (cdc_local.stack.services.kafka). The connection goes
through the provider's config builder (hooks.kafka) and, for Spark, through
cdc_stream.kafka_options, as the stream's does."""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cdc_platform.kafka_clients import CLIENT_CONFIG_ENV, client_config, encode_client_config
from cdc_platform.packaging import build_py_files

pytestmark = pytest.mark.integration

SPARK_APP = Path(__file__).parent / "spark_apps" / "kafka_roundtrip.py"
CONN_ID = "kafka_sasl_test"


@pytest.fixture
def sasl_config(stack_env, airflow_connections, monkeypatch) -> dict:
    """The client config the provider builds from a Kafka connection whose extras ask for SASL."""
    from cdc_platform.hooks.kafka import kafka_config

    extra = {"bootstrap.servers": stack_env["KAFKA_SASL_BOOTSTRAP"], "security.protocol": "SASL_PLAINTEXT",
             "sasl.mechanism": "PLAIN", "sasl.username": stack_env["KAFKA_SASL_USER"],
             "sasl.password": stack_env["KAFKA_SASL_PASSWORD"]}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "kafka", "extra": extra}))
    return kafka_config(CONN_ID)


@pytest.fixture
def topics(sasl_config):
    names = [f"it_sasl_{role}_{uuid.uuid4().hex[:8]}" for role in ("source", "target")]
    admin = AdminClient(client_config(sasl_config))
    for future in admin.create_topics([NewTopic(name, 1, 1) for name in names]).values():
        future.result(30)
    yield names
    admin.delete_topics(names)


def test_the_listener_lets_in_the_connections_login_and_no_other(sasl_config):
    assert AdminClient(client_config(sasl_config)).list_topics(timeout=15).brokers
    wrong = client_config(sasl_config, {"sasl.password": "not-the-password"})
    with pytest.raises(KafkaException):
        AdminClient(wrong).list_topics(timeout=15)


def test_spark_reads_and_writes_with_the_options_derived_from_the_connection(stack_env, sasl_config, topics, tmp_path):
    source, target = topics
    producer = Producer(client_config(sasl_config))
    sent = {str(i): json.dumps({"n": i}) for i in range(137)}
    for key, value in sent.items():
        producer.produce(source, key=key, value=value)
    assert producer.flush(30) == 0

    archive = build_py_files(tmp_path / "pyfiles")
    result = subprocess.run(
        [stack_env["SPARK_SUBMIT"], "--master", "local[1]", "--jars", stack_env["SPARK_KAFKA_JARS"],
         "--py-files", str(archive), "--conf", "spark.ui.enabled=false", str(SPARK_APP), source, target],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, **stack_env, CLIENT_CONFIG_ENV: encode_client_config(sasl_config)},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert [line for line in result.stdout.splitlines() if line.startswith("COUNT=")] == ["COUNT=137"], \
        result.stdout[-2000:]

    consumer = Consumer(client_config(sasl_config, {"group.id": f"it-sasl-{uuid.uuid4().hex[:8]}",
                                                    "auto.offset.reset": "earliest"}))
    consumer.subscribe([target])
    copied: dict[str, str] = {}
    try:
        for _ in range(60):
            for message in consumer.consume(num_messages=500, timeout=1):
                assert message.error() is None, message.error()
                copied[message.key().decode()] = message.value().decode()
            if len(copied) == len(sent):
                break
    finally:
        consumer.close()
    assert copied == sent
