"""The Kafka connection's client config (librdkafka names) as options of Spark's Kafka source and
sink (Java client names). No Spark, no Kafka: a real SASL or TLS broker is not part of the local
stack, so what is checked here is the translation, against the Java client's documented names."""
from __future__ import annotations

import pytest

from cdc_stream.kafka_options import spark_kafka_options

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def test_a_plaintext_connection_gives_only_the_bootstrap_servers():
    assert spark_kafka_options({"bootstrap.servers": "kafka:9092"}) == {"kafka.bootstrap.servers": "kafka:9092"}


def test_sasl_plain_over_tls_becomes_a_jaas_login_and_a_pem_trust_store():
    options = spark_kafka_options({
        "bootstrap.servers": "b1:9093,b2:9093", "security.protocol": "sasl_ssl", "sasl.mechanisms": "PLAIN",
        "sasl.username": "cdc", "sasl.password": "s3cret", "ssl.ca.location": "/etc/kafka/ca.pem",
        "client.id": "cdc-stream"})
    assert options == {
        "kafka.bootstrap.servers": "b1:9093,b2:9093",
        "kafka.client.id": "cdc-stream",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config": f'{PLAIN_MODULE} required username="cdc" password="s3cret";',
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": "/etc/kafka/ca.pem",
    }


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_logs_in_with_the_scram_module(mechanism):
    options = spark_kafka_options({"bootstrap.servers": "b:9093", "security.protocol": "SASL_SSL",
                                   "sasl.mechanism": mechanism, "sasl.username": "cdc", "sasl.password": "pw"})
    assert options["kafka.sasl.mechanism"] == mechanism
    assert options["kafka.sasl.jaas.config"] == f'{SCRAM_MODULE} required username="cdc" password="pw";'


def test_quotes_backslashes_and_line_breaks_of_a_password_are_escaped_in_the_jaas_login():
    options = spark_kafka_options({"bootstrap.servers": "b:9093", "sasl.mechanism": "PLAIN",
                                   "sasl.username": 'a"b', "sasl.password": 'p"w\\x\ny;'})
    # The Java client's tokenizer reads \" as ", \\ as \ and \n as a line break inside quotes.
    assert options["kafka.sasl.jaas.config"] == (
        f'{PLAIN_MODULE} required username="a\\"b" password="p\\"w\\\\x\\ny;";')


def test_mutual_tls_takes_one_pem_file_with_key_and_certificate_chain():
    options = spark_kafka_options({"bootstrap.servers": "b:9093", "security.protocol": "SSL",
                                   "ssl.ca.location": "/tls/ca.pem", "ssl.certificate.location": "/tls/client.pem",
                                   "ssl.key.location": "/tls/client.pem", "ssl.key.password": "kp",
                                   "ssl.endpoint.identification.algorithm": "none"})
    assert options == {
        "kafka.bootstrap.servers": "b:9093", "kafka.security.protocol": "SSL",
        "kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": "/tls/ca.pem",
        "kafka.ssl.keystore.type": "PEM", "kafka.ssl.keystore.location": "/tls/client.pem",
        "kafka.ssl.key.password": "kp",
        # The Java client's way of saying librdkafka's "none".
        "kafka.ssl.endpoint.identification.algorithm": "",
    }


def test_a_certificate_and_key_in_separate_files_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="one PEM file"):
        spark_kafka_options({"bootstrap.servers": "b:9093", "ssl.certificate.location": "/tls/cert.pem",
                             "ssl.key.location": "/tls/key.pem"})


@pytest.mark.parametrize("config, named", [
    ({"enable.ssl.certificate.verification": False, "sasl.oauthbearer.method": "oidc"},
     "enable.ssl.certificate.verification, sasl.oauthbearer.method"),
    ({"sasl.mechanism": "OAUTHBEARER", "sasl.username": "u", "sasl.password": "p"}, "OAUTHBEARER"),
    ({"sasl.mechanism": "PLAIN", "sasl.username": "u"}, "sasl.username and sasl.password"),
    ({"sasl.mechanism": "PLAIN", "sasl.mechanisms": "SCRAM-SHA-256"}, "disagree"),
    ({"ssl.endpoint.identification.algorithm": "dns"}, "'dns'"),
])
def test_settings_without_a_java_equivalent_stop_the_job_by_name(config, named):
    with pytest.raises(ValueError, match=named):
        spark_kafka_options({"bootstrap.servers": "b:9093", **config})


def test_the_connections_consumer_group_is_not_the_streams():
    assert spark_kafka_options({"bootstrap.servers": "b:9093", "group.id": "airflow"}) == {
        "kafka.bootstrap.servers": "b:9093"}
