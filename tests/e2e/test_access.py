"""Access on the live stack: nothing listens beyond loopback, and no generated credential
leaks into the repository or the services' logs."""
from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

import psutil
import pytest

from cdc_local import pipeline_driver
from cdc_local.stack.supervisor import Supervisor

pytestmark = [pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_every_port_the_stack_and_the_stream_listen_on_is_loopback(stream, stack_config):
    root = psutil.Process(Supervisor(stack_config).pid())
    pids = {root.pid, *(p.pid for p in root.children(recursive=True))}
    assert set(pipeline_driver.stream_driver_pids()) & pids, "the stream's driver runs under the stack"
    listening = sorted({(c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
                        for c in psutil.net_connections("inet")
                        if c.status == psutil.CONN_LISTEN and c.pid in pids})
    assert len(listening) >= 8, listening
    assert [entry for entry in listening if not is_loopback(entry[0])] == []


def test_no_generated_credential_is_in_a_tracked_file_or_a_service_log(stream, stack_config):
    secrets = json.loads((stack_config.secrets / "stack-secrets.json").read_text())
    assert len(secrets) >= 8
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = [REPO / name for name in tracked.decode().split("\0") if name]
    files += [p for p in stack_config.logs.rglob("*") if p.is_file()]
    leaks = []
    for path in files:
        if not path.is_file():
            continue
        data = path.read_bytes()
        leaks += [(str(path), name) for name, value in secrets.items() if value.encode() in data]
    assert leaks == []


def test_cassandra_refuses_anonymous_and_default_logins_and_the_sink_role_only_reads_and_writes(stream, stack_env):
    from cassandra import Unauthorized
    from cassandra.cluster import NoHostAvailable

    from cdc_platform import names
    from cdc_platform.cassandra_cluster import cassandra_cluster

    host, port = stack_env["CASSANDRA_HOST"], stack_env["CASSANDRA_PORT"]
    for credentials in ((), ("cassandra", "cassandra")):
        cluster = cassandra_cluster(host, port, *credentials)
        try:
            with pytest.raises(NoHostAvailable, match="(?i)authenticat"):
                cluster.connect()
        finally:
            cluster.shutdown()
    keyspace, table = names.CASSANDRA_KEYSPACE, names.CASSANDRA_EVENTS_TABLE
    sink = cassandra_cluster(host, port, stack_env["CASSANDRA_SINK_USER"], stack_env["CASSANDRA_SINK_PASSWORD"])
    try:
        session = sink.connect()
        session.execute(f"SELECT id FROM {keyspace}.{table} LIMIT 1")
        session.execute(f"DELETE FROM {keyspace}.{table} WHERE id = -1")  # a write that changes no row
        for statement in (f"CREATE TABLE {keyspace}.intruder (id int PRIMARY KEY)", f"DROP TABLE {keyspace}.{table}",
                          "CREATE KEYSPACE intruder WITH replication = {'class': 'SimpleStrategy', "
                          "'replication_factor': 1}", "CREATE ROLE intruder WITH LOGIN = true AND PASSWORD = 'x'"):
            with pytest.raises(Unauthorized):
                session.execute(statement)
    finally:
        sink.shutdown()
