import collections
import socket
import stat
from pathlib import Path

import pytest

from cdc_local.stack import preflight
from cdc_local.stack.config import DEFAULT_PORTS, StackConfig
from cdc_local.stack.service import Service, StackError


def test_defaults_are_the_usual_ports(tmp_path):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path)})
    assert cfg.ports == DEFAULT_PORTS
    assert cfg.ports["postgres"] == 5432 and cfg.ports["kafka"] == 9092 and cfg.ports["airflow"] == 8080
    assert cfg.state_dir == tmp_path.resolve()
    assert cfg.env_file == tmp_path.resolve() / "env"


def test_ports_are_overridden_from_the_environment(tmp_path):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_PORT_KAFKA": "19092", "CDC_PORT_REDIS": "16379"})
    assert cfg.ports["kafka"] == 19092 and cfg.ports["redis"] == 16379 and cfg.ports["postgres"] == 5432


@pytest.mark.parametrize("value", ["abc", "0", "70000"])
def test_bad_port_values_are_refused_with_the_variable_name(tmp_path, value):
    with pytest.raises(SystemExit, match="CDC_PORT_KAFKA"):
        StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_PORT_KAFKA": value})


def test_taken_port_is_refused_with_the_override_hint(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_PORT_REDIS": str(port)})
        svc = Service(name="redis", command=["true"], port=port, ready=lambda: True)
        with pytest.raises(StackError) as err:
            preflight.check_ports_free(cfg, svc)
    message = str(err.value)
    assert f"port {port}" in message and "CDC_PORT_REDIS" in message and "redis" in message


def test_free_port_passes(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path)})
    preflight.check_ports_free(cfg, Service(name="x", command=["true"], port=port, ready=lambda: True))


def _fake_java(tmp_path: Path, version_line: str) -> str:
    script = tmp_path / "java"
    script.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.parametrize("line,major", [
    ('openjdk version "17.0.15" 2025-04-15', 17),
    ('openjdk version "21" 2023-09-19', 21),
    ('java version "1.8.0_392"', 8),
    ('openjdk version "11.0.2" 2019-01-15', 11),
])
def test_java_major_is_parsed(tmp_path, line, major):
    assert preflight.java_major(_fake_java(tmp_path, line)) == major


def test_old_java_is_refused(tmp_path, monkeypatch):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path), "CDC_JAVA_HOME": str(tmp_path / "jdk")})
    (tmp_path / "jdk" / "bin").mkdir(parents=True)
    _fake_java(tmp_path / "jdk" / "bin", 'openjdk version "11.0.2" 2019-01-15')
    with pytest.raises(StackError, match="Java 11 is too old"):
        preflight.check_java(cfg)


def test_missing_java_is_a_clear_error(tmp_path):
    with pytest.raises(StackError, match="Java not found"):
        preflight.java_major(str(tmp_path / "nope" / "java"))


def test_short_disk_is_refused(tmp_path, monkeypatch):
    cfg = StackConfig.load({"CDC_STATE_DIR": str(tmp_path)})
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _: usage(100 * 2**30, 99 * 2**30, 512 * 2**20))
    with pytest.raises(StackError, match="GiB free"):
        preflight.check_disk(cfg)
