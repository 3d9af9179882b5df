"""Cassandra 5.0, single node, started from the Maven jars with CassandraDaemon."""
from __future__ import annotations

from cdc_platform import names
from cdc_local.stack.config import StackConfig
from cdc_local.stack.cassandra_roles import DEFAULT_SUPERUSER
from cdc_local.stack.service import Service, StackError, java_command

# conf/jvm17-server.options of Cassandra 5.0: without these the daemon dies on Java 17.
JVM17_OPTS = [
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]

# What CassandraRoleManager creates on the first start; after_ready drops it.

LOGBACK = """\
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def service(cfg: StackConfig, secrets: dict[str, str]) -> Service:
    port = cfg.ports["cassandra"]
    storage_port = cfg.ports["cassandra_storage"]
    jmx_port = cfg.ports["cassandra_jmx"]
    data_dir = cfg.data / "cassandra"
    yaml_path = cfg.conf / "cassandra.yaml"
    logback_path = cfg.conf / "cassandra-logback.xml"
    jars = cfg.jars / "cassandra"
    tmp_dir = cfg.run / "cassandra-tmp"

    def jamm_jar() -> str:
        found = sorted(jars.glob("jamm-*.jar"))
        return str(found[-1]) if found else str(jars / "jamm.jar")

    def prepare() -> None:
        if not any(jars.glob("cassandra-all-*.jar")):
            raise StackError(f"Cassandra jars missing in {jars}; run `make install`.")
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        yaml_path.parent.mkdir(parents=True, exist_ok=True)
        logback_path.write_text(LOGBACK)
        yaml_path.write_text(f"""\
cluster_name: cdc_local
num_tokens: 1
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 32MiB
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{cfg.host}:{storage_port}"
listen_address: {cfg.host}
rpc_address: {cfg.host}
storage_port: {storage_port}
native_transport_port: {port}
start_native_transport: true
data_file_directories:
  - {data_dir / 'data'}
commitlog_directory: {data_dir / 'commitlog'}
saved_caches_directory: {data_dir / 'saved_caches'}
hints_directory: {data_dir / 'hints'}
cdc_raw_directory: {data_dir / 'cdc_raw'}
authenticator: PasswordAuthenticator
authorizer: CassandraAuthorizer
role_manager: CassandraRoleManager
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_compactors: 1
memtable_heap_space: 96MiB
memtable_offheap_space: 96MiB
key_cache_size: 16MiB
counter_cache_size: 0MiB
# The stream's sink writes unlogged batches of up to 50 rows and 48 KiB (cdc_stream.cassandra_sink),
# each spanning many partitions of the one node: above the defaults' warnings (5 KiB, 10 partitions),
# which would log on every batch.
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 256KiB
unlogged_batch_across_partitions_warn_threshold: 100
# Test keyspaces are dropped often; snapshots on drop would only fill the disk.
auto_snapshot: false
""")

    opts = [
        f"-javaagent:{jamm_jar()}",
        *JVM17_OPTS,
        "-XX:MaxDirectMemorySize=256m",
        "-Xss512k",
        "-Djava.net.preferIPv4Stack=true",
        f"-Dcassandra.config=file://{yaml_path}",
        f"-Dcassandra.storagedir={data_dir}",
        f"-Dcassandra.logdir={cfg.logs}",
        "-Dcassandra-foreground=yes",
        f"-Dlogback.configurationFile={logback_path}",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        # The default superuser (cassandra/cassandra) is created right away, not after 10 s, so
        # after_ready can replace it with the generated admin role at once.
        "-Dcassandra.superuser_setup_delay_ms=0",
        f"-Dcassandra.jmx.local.port={jmx_port}",
        f"-Djna.tmpdir={tmp_dir}",
        f"-Djava.io.tmpdir={tmp_dir}",
    ]

    admin = (names.CASSANDRA_ADMIN_ROLE, secrets["cassandra_admin_password"])

    def connect(credentials: tuple[str, str]):
        from cdc_platform.cassandra_cluster import cassandra_cluster

        cluster = cassandra_cluster(cfg.host, port, *credentials, connect_timeout=3, control_connection_timeout=3)
        try:
            return cluster, cluster.connect()
        except Exception:
            cluster.shutdown()
            raise

    def ready() -> bool:
        """CQL answers, to the admin or (first start, before after_ready) to the default superuser."""
        from cassandra.cluster import NoHostAvailable

        for credentials in (admin, DEFAULT_SUPERUSER):
            try:
                cluster, session = connect(credentials)
            except NoHostAvailable:
                continue
            try:
                return session.execute("SELECT release_version FROM system.local").one() is not None
            finally:
                cluster.shutdown()
        return False

    def after_ready() -> None:
        from cdc_local.stack.cassandra_roles import ensure_roles

        ensure_roles(cfg.host, port, admin[1], secrets["cassandra_sink_password"])

    return Service(
        name="cassandra",
        command=java_command(cfg, cfg.heaps["cassandra"], f"{jars}/*",
                             "org.apache.cassandra.service.CassandraDaemon", jvm_opts=opts),
        port=port,
        extra_ports=(storage_port, jmx_port),
        ready=ready,
        ready_timeout=240,
        stopwaitsecs=60,
        prepare=prepare,
        after_ready=after_ready,
    )
