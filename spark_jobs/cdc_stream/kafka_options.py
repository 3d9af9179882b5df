"""The Kafka connection's client config (librdkafka's names, as the provider builds it for
confluent-kafka) as options of Spark's Kafka source and sink, whose Java client spells several
settings differently: the SASL login is one JAAS string, certificates are key and trust stores.

A setting without a known Java equivalent stops the job by name: a stream that silently left
out the connection's SASL or TLS settings would connect without them, or not at all.
"""
from __future__ import annotations

from collections.abc import Mapping

# The same name and meaning in librdkafka and the Java client.
SAME_NAME = ("bootstrap.servers", "client.id", "ssl.key.password")
# Settings a connection may carry that have no meaning for Spark's clients, with the reason.
IGNORED = {
    # The provider's own example extra carries one. Spark's source names a group per query, and
    # each confluent-kafka client of the job sets its own (see kafka_clients.client_config).
    "group.id": "each Kafka client of the stream has a group of its own",
}
JAAS_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
# librdkafka's "none" is the Java client's empty value: no host name check of the broker's certificate.
ENDPOINT_IDENTIFICATION = {"https": "https", "none": ""}


def spark_kafka_options(config: Mapping) -> dict[str, str]:
    """``config`` (librdkafka names) -> the ``kafka.``-prefixed options of Spark's Kafka source
    and sink. Raises ValueError naming every setting it cannot carry over."""
    remaining = {key: value for key, value in config.items() if key not in IGNORED}
    take = remaining.pop
    java = {name: str(take(name)) for name in SAME_NAME if name in remaining}
    if "security.protocol" in remaining:
        java["security.protocol"] = str(take("security.protocol")).upper()
    mechanism = sasl_mechanism(take("sasl.mechanism", None), take("sasl.mechanisms", None))
    if mechanism:
        java["sasl.mechanism"] = mechanism
    username, password = take("sasl.username", None), take("sasl.password", None)
    if username is not None or password is not None:
        java["sasl.jaas.config"] = jaas_config(mechanism, username, password)
    if "ssl.ca.location" in remaining:
        # A PEM file of trusted certificates, as librdkafka reads it (Java client 2.7+, KIP-651).
        java.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": str(take("ssl.ca.location"))})
    certificate, key = take("ssl.certificate.location", None), take("ssl.key.location", None)
    if certificate is not None or key is not None:
        java.update(pem_keystore(certificate, key))
    if "ssl.endpoint.identification.algorithm" in remaining:
        algorithm = str(take("ssl.endpoint.identification.algorithm")).lower()
        if algorithm not in ENDPOINT_IDENTIFICATION:
            raise ValueError(f"ssl.endpoint.identification.algorithm={algorithm!r}: expected one of "
                             f"{sorted(ENDPOINT_IDENTIFICATION)}")
        java["ssl.endpoint.identification.algorithm"] = ENDPOINT_IDENTIFICATION[algorithm]
    if remaining:
        raise ValueError(f"the Kafka connection's settings {', '.join(sorted(remaining))} have no known "
                         "equivalent in Spark's Kafka client, so the stream cannot honour them (remove them "
                         "from the connection, or map them in cdc_stream.kafka_options)")
    return {f"kafka.{name}": value for name, value in java.items()}


def sasl_mechanism(mechanism: str | None, mechanisms: str | None) -> str | None:
    """librdkafka takes ``sasl.mechanisms`` as an alias of ``sasl.mechanism``; a client uses one."""
    if mechanism and mechanisms and mechanism != mechanisms:
        raise ValueError(f"sasl.mechanism={mechanism!r} and sasl.mechanisms={mechanisms!r} disagree")
    return mechanism or mechanisms


def jaas_config(mechanism: str | None, username: str | None, password: str | None) -> str:
    """The Java client's login for a SASL user name and password."""
    module = JAAS_LOGIN_MODULES.get(mechanism or "")
    if module is None:
        raise ValueError(f"sasl.username/sasl.password with sasl.mechanism={mechanism!r}: the stream logs in "
                         f"to Spark's Kafka client with one of {', '.join(JAAS_LOGIN_MODULES)}")
    if username is None or password is None:
        raise ValueError("sasl.username and sasl.password come together")
    return f"{module} required username={jaas_quoted(username)} password={jaas_quoted(password)};"


def jaas_quoted(value) -> str:
    """A JAAS option value in double quotes. The Java client parses sasl.jaas.config with a
    StreamTokenizer, which reads backslash escapes inside quotes and ends a quoted value at a line
    break: so backslashes, quotes and line breaks are escaped."""
    escaped = (str(value).replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r"))
    return f'"{escaped}"'


def pem_keystore(certificate: str | None, key: str | None) -> dict[str, str]:
    """librdkafka reads the client certificate and its key from two settings; the Java client's
    PEM key store is one file holding the private key (PKCS#8) and the certificate chain. Both
    settings naming one such file is the case that carries over."""
    if certificate is None or key is None or certificate != key:
        raise ValueError("ssl.certificate.location and ssl.key.location must name one PEM file holding the "
                         "private key (PKCS#8) and the certificate chain: Spark's Kafka client reads a PEM key "
                         f"store from a single file (got certificate {certificate!r}, key {key!r})")
    return {"ssl.keystore.type": "PEM", "ssl.keystore.location": str(certificate)}
