"""docker/compose.yaml checked by a real Compose parser (no engine runs here), and against the
definitions it shares with the local stack."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from cdc_local.stack import compose
from cdc_local.stack.config import REPO_ROOT
from cdc_local.stack.envfile import airflow_connections, connect_secrets_file
from cdc_local.stack.secrets import SECRET_NAMES

DOCKER = REPO_ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*Dockerfile"))


def compose_command() -> list[str]:
    """`docker compose` where the Compose CLI plugin exists, else Debian's docker-compose 1.29
    (installed by `make install`)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    found = shutil.which("docker-compose")
    if not found:
        pytest.fail("no Compose CLI: run `make install` (it installs Debian's docker-compose)")
    return [found]


@pytest.fixture(scope="module")
def env_values() -> dict[str, str]:
    """A docker/.env with a recognisable value per variable."""
    names = [line.split("=", 1)[0] for line in compose.ENV_EXAMPLE.read_text().splitlines()
             if line and not line.startswith("#")]
    return {name: f"secret-{name.lower().replace('_', '-')}-7f3a" for name in names}


@pytest.fixture(scope="module")
def config(env_values, tmp_path_factory) -> dict:
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_values.items()))
    result = subprocess.run([*compose_command(), "-f", str(compose.COMPOSE_FILE), "--env-file", str(env_file),
                             "config"], capture_output=True, text=True, cwd=DOCKER)
    assert result.returncode == 0, result.stderr
    assert "is not set" not in result.stderr, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_compose_file_holds_the_connections_rendered_from_the_local_stacks_definition():
    text = compose.COMPOSE_FILE.read_text()
    assert compose.with_block(text) == text, "run: python -m cdc_local.stack.compose"


def test_every_airflow_service_gets_the_local_stacks_connections_with_compose_hosts_and_secrets(config, env_values):
    expected = airflow_connections(compose.SERVICES.__getitem__, lambda name: env_values[compose.variable(name)],
                                   str(connect_secrets_file(compose.CONNECT_SECRETS_DIR)))
    airflow_services = [name for name in config["services"] if name.startswith("airflow-")]
    assert len(airflow_services) == 5
    for name in airflow_services:
        environment = config["services"][name]["environment"]
        # `config` prints a literal "$" escaped as "$$", so that its output is a valid file again.
        got = {key[len("AIRFLOW_CONN_"):].lower(): json.loads(value.replace("$$", "$"))
               for key, value in environment.items() if key.startswith("AIRFLOW_CONN_")}
        assert got == expected, name
    # Compose left Kafka Connect's config-provider reference for Connect to resolve.
    ref = expected["kafka_connect_default"]["extra"]["database_password_ref"]
    assert ref == "${file:/kafka/secrets/connect-secrets.properties:postgres.password}"


def test_every_variable_is_a_stack_secret_listed_in_env_example(env_values):
    referenced = compose.referenced_variables(compose.COMPOSE_FILE.read_text())
    referenced |= set(re.findall(r"\$\{([A-Z0-9_]+)\}", (DOCKER / "postgres-init.sh").read_text()))
    assert referenced == set(env_values)
    assert referenced <= {name.upper() for name in SECRET_NAMES}


def test_no_secret_is_on_a_command_line(config, env_values):
    for name, service in config["services"].items():
        argv = json.dumps([service.get("command"), service.get("entrypoint"), service.get("healthcheck")])
        leaked = [k for k, v in env_values.items() if v in argv]
        assert not leaked, f"{name} puts {leaked} on a command line"


def _pom_versions() -> dict[str, str]:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    props = ET.parse(REPO_ROOT / "include" / "stack" / "jars" / "pom.xml").getroot().find("m:properties", ns)
    return {child.tag.split("}")[1]: child.text for child in props}


def _images(config) -> list[str]:
    images = [s["image"] for s in config["services"].values() if "image" in s]
    for dockerfile in DOCKERFILES:
        images += re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), flags=re.M)
    return images


def pinned(image: str) -> bool:
    """A tag naming one release: major.minor.patch, or major.minor for PostgreSQL, whose
    releases are numbered so (15.18)."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    parts = r"\d+\.\d+" if name == "postgres" else r"\d+\.\d+\.\d+"
    return re.match(rf"^{parts}([.-]|$)", tag) is not None


@pytest.mark.parametrize("image, ok", [
    ("postgres:15.18", True), ("postgres:15", False), ("redis:7.0.15", True), ("redis:7", False),
    ("maven:3.9-eclipse-temurin-17", False), ("maven:3.9.11-eclipse-temurin-17", True),
    ("quay.io/debezium/connect:3.6.1.Final", True), ("quay.io/debezium/connect", False),
    ("cassandra:latest", False), ("localhost:5000/img", False),
])
def test_what_counts_as_pinned(image, ok):
    assert pinned(image) is ok


def test_every_image_is_pinned_to_the_versions_the_local_stack_runs(config):
    images = _images(config)
    assert [i for i in images if not pinned(i)] == []
    versions = _pom_versions()
    requirements = (REPO_ROOT / "requirements.txt").read_text()
    airflow = re.search(r"^apache-airflow==(\S+)", requirements, flags=re.M).group(1)
    assert f"apache/kafka:{versions['kafka.version']}" in images
    assert f"quay.io/debezium/connect:{versions['debezium.version']}" in images
    assert f"cassandra:{versions['cassandra.version']}" in images
    assert any(i.startswith(f"apache/airflow:{airflow}-") for i in images), images


def test_every_mounted_file_and_build_file_exists(config):
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            kind = volume.get("type") if isinstance(volume, dict) else ("bind" if source.startswith(("/", ".")) else "volume")
            if kind == "bind":
                assert Path(source).exists(), f"{name} mounts {source}, which does not exist"
        if "build" in service:
            build = service["build"]
            assert (Path(build["context"]) / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_the_airflow_image_holds_what_the_stream_builds_its_wheel_from_where_the_operator_looks():
    """The operator builds the job's wheel from the repository it runs in (/opt/airflow in the
    image): the project file and both source roots must be there, in the repository's layout."""
    from cdc_platform import packaging

    copies = {}
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, destination = [word for word in line.split()[1:] if not word.startswith("--")]
            copies.update((source, destination) for source in sources)
    missing = [relative for relative in packaging.SOURCES
               if not any((relative == source or relative.startswith(f"{source}/")) and destination == f"/opt/airflow/{source}"
                          for source, destination in copies.items())]
    assert missing == []


def test_cassandra_requires_a_password_and_the_sink_has_its_own_role(config):
    options = config["services"]["cassandra"]["environment"]["JVM_EXTRA_OPTS"]
    assert "-Dcassandra.settings.authenticator=PasswordAuthenticator" in options
    assert "-Dcassandra.config.allow_system_properties=true" in options
    init = config["services"]["cassandra-init"]
    assert init["entrypoint"][:3] == ["python", "-m", "cdc_local.stack.cassandra_roles"]
    scheduler = config["services"]["airflow-scheduler"]["depends_on"]
    assert scheduler["cassandra-init"]["condition"] == "service_completed_successfully"
