"""Kafka broker, single node in KRaft mode (combined broker + controller)."""
from __future__ import annotations

import base64
import os
import subprocess

from cdc_platform import semantics

from cdc_local.stack.config import StackConfig
from cdc_local.stack.service import Service, StackError, java_command, port_open

LOG4J2_TEMPLATE = """\
Configuration:
  status: warn
  Appenders:
    Console:
      name: STDOUT
      target: SYSTEM_OUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: info
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: warn
      - name: org.apache.kafka.clients
        level: warn
      - name: org.reflections
        level: error
"""


def kafka_classpath(cfg: StackConfig) -> str:
    return f"{cfg.jars / 'kafka'}/*"


def require_kafka_jars(cfg: StackConfig) -> None:
    if not any((cfg.jars / "kafka").glob("kafka_2.13-*.jar")):
        raise StackError(f"Kafka jars missing in {cfg.jars / 'kafka'}; run `make install`.")


def write_log4j2(cfg: StackConfig) -> str:
    path = cfg.conf / "kafka-log4j2.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(LOG4J2_TEMPLATE)
    return str(path)


def logging_opts(cfg: StackConfig, name: str) -> list[str]:
    return [
        f"-Dlog4j2.configurationFile={write_log4j2(cfg)}",
        f"-Dkafka.logs.dir={cfg.logs / name}",
    ]


# The one user of the SASL listener (its password is the stack secret kafka_sasl_password).
SASL_USER = "cdc_client"


def sasl_listener_props(cfg: StackConfig, password: str) -> dict[str, str]:
    """The SASL_PLAINTEXT listener's own settings: PLAIN logins checked against one user. The
    PLAINTEXT listener stays the broker's and Connect's; only clients that ask for SASL use this.
    The generated password is URL-safe, so it needs no escaping in JAAS nor in a .properties file."""
    if not password.replace("-", "").replace("_", "").isalnum():
        raise StackError("kafka_sasl_password must be URL-safe (it is written unescaped into a .properties file)")
    return {
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{SASL_USER}="{password}";',
    }


def service(cfg: StackConfig, secrets: dict[str, str]) -> Service:
    port = cfg.ports["kafka"]
    sasl_port = cfg.ports["kafka_sasl"]
    controller_port = cfg.ports["kafka_controller"]
    data_dir = cfg.data / "kafka"
    props_path = cfg.conf / "kafka-server.properties"
    cluster_id_path = cfg.data / "kafka.cluster-id"

    def prepare() -> None:
        require_kafka_jars(cfg)
        data_dir.mkdir(parents=True, exist_ok=True)
        props_path.parent.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{cfg.host}:{controller_port}",
            "listeners": f"PLAINTEXT://{cfg.host}:{port},CONTROLLER://{cfg.host}:{controller_port},"
                         f"SASL_PLAINTEXT://{cfg.host}:{sasl_port}",
            "advertised.listeners": f"PLAINTEXT://{cfg.host}:{port},SASL_PLAINTEXT://{cfg.host}:{sasl_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            **sasl_listener_props(cfg, secrets["kafka_sasl_password"]),
            "log.dirs": str(data_dir),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created deliberately (provisioning, Connect's topic.creation).
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
            "message.max.bytes": str(semantics.MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(semantics.MAX_MESSAGE_BYTES),
            "num.network.threads": "2",
            "num.io.threads": "2",
        }
        props_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        if not cluster_id_path.exists():
            cluster_id_path.write_text(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))
        if not (data_dir / "meta.properties").exists():
            print("    formatting KRaft storage (first start)")
            cmd = java_command(cfg, "256m", kafka_classpath(cfg), "kafka.tools.StorageTool",
                               "format", "-t", cluster_id_path.read_text().strip(), "-c", str(props_path),
                               "--ignore-formatted", jvm_opts=logging_opts(cfg, "kafka"))
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise StackError(f"Kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    def ready() -> bool:
        from confluent_kafka.admin import AdminClient

        if not port_open(cfg.host, port):
            return False
        admin = AdminClient({"bootstrap.servers": f"{cfg.host}:{port}", "socket.timeout.ms": 2000, "log_level": 0})
        metadata = admin.list_topics(timeout=3)
        return bool(metadata.brokers)

    return Service(
        name="kafka",
        command=java_command(cfg, cfg.heaps["kafka"], kafka_classpath(cfg), "kafka.Kafka", str(props_path),
                             jvm_opts=logging_opts(cfg, "kafka")),
        port=port,
        extra_ports=(controller_port, sasl_port),
        ready=ready,
        ready_timeout=90,
        stopwaitsecs=60,
        prepare=prepare,
    )
