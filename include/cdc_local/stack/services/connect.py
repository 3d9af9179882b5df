"""Kafka Connect in distributed mode, with the Debezium PostgreSQL plugin."""
from __future__ import annotations

from cdc_platform import semantics
from cdc_local.stack.config import StackConfig
from cdc_local.stack.secrets import write_private
from cdc_local.stack.service import Service, StackError, java_command
from cdc_local.stack.services.kafka import kafka_classpath, logging_opts, require_kafka_jars

DEBEZIUM_POSTGRES_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
# Built from include/stack/jars/connect-transforms by `make install`.
TRANSFORMS_PLUGIN = "cdc-connect-transforms"


def secrets_properties_path(cfg: StackConfig):
    from cdc_local.stack.envfile import connect_secrets_file

    return connect_secrets_file(cfg.secrets)


def service(cfg: StackConfig, secrets: dict[str, str]) -> Service:
    port = cfg.ports["connect"]
    props_path = cfg.conf / "connect-distributed.properties"
    plugin_path = cfg.jars / "connect-plugins"

    def prepare() -> None:
        require_kafka_jars(cfg)
        for plugin in ("debezium-connector-postgres", TRANSFORMS_PLUGIN):
            if not (plugin_path / plugin).is_dir():
                raise StackError(f"Connect plugin {plugin} missing in {plugin_path}; run `make install`.")
        cfg.data.joinpath("connect").mkdir(parents=True, exist_ok=True)
        secret_file = secrets_properties_path(cfg)
        write_private(secret_file, f"postgres.password={secrets['debezium_password']}\n")
        props = {
            "bootstrap.servers": f"{cfg.host}:{cfg.ports['kafka']}",
            "group.id": "cdc-connect",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            # Plain JSON payloads: the Spark job applies its own explicit schema.
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "config.storage.topic": "_connect-configs",
            "offset.storage.topic": "_connect-offsets",
            "status.storage.topic": "_connect-status",
            "config.storage.replication.factor": "1",
            "offset.storage.replication.factor": "1",
            "status.storage.replication.factor": "1",
            "offset.storage.partitions": "5",
            "status.storage.partitions": "1",
            "offset.flush.interval.ms": "5000",
            "producer.max.request.size": str(semantics.MAX_MESSAGE_BYTES),
            "listeners": f"http://{cfg.host}:{port}",
            "rest.advertised.host.name": cfg.host,
            "rest.advertised.port": str(port),
            "plugin.path": str(plugin_path),
            "plugin.discovery": "hybrid_warn",
            "config.providers": "file",
            "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
            "config.providers.file.param.allowed.paths": str(cfg.secrets),
        }
        props_path.parent.mkdir(parents=True, exist_ok=True)
        props_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def ready() -> bool:
        import requests

        response = requests.get(f"http://{cfg.host}:{port}/connector-plugins", timeout=3)
        return response.ok and any(p.get("class") == DEBEZIUM_POSTGRES_CLASS for p in response.json())

    return Service(
        name="connect",
        command=java_command(cfg, cfg.heaps["connect"], kafka_classpath(cfg),
                             "org.apache.kafka.connect.cli.ConnectDistributed", str(props_path),
                             jvm_opts=logging_opts(cfg, "connect")),
        port=port,
        ready=ready,
        ready_timeout=150,
        stopwaitsecs=60,
        prepare=prepare,
    )
