"""Redis through Sentinel: a real Sentinel (redis-server --sentinel) watching the stack's Redis,
reached the way a deployment configures it, through the redis_default connection's extra."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from urllib.parse import urlsplit

import pytest

from cdc_platform import redis_client
from cdc_platform.hooks.redis import redis_url_of

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sentinel(stack_env, tmp_path):
    redis_url = urlsplit(stack_env["REDIS_URL"])
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    # Sentinel rewrites its config file, so it must be its own and writable; mode 0600 (a password).
    conf.touch(mode=0o600)
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor cdc {redis_url.hostname} {redis_url.port} 1\n"
                    f"sentinel auth-pass cdc {redis_url.password}\n")
    proc = subprocess.Popen([server, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    yield port, redis_url
    proc.terminate()
    proc.wait(timeout=10)


def test_the_sink_and_the_dags_reach_the_master_through_sentinel(sentinel):
    from urllib.parse import unquote

    port, redis_url = sentinel
    url = redis_url_of(f"127.0.0.1:{port}", None, unquote(redis_url.password), {"db": 0, "sentinel_master": "cdc"})
    assert url.startswith("redis+sentinel://") and url.endswith(f"@127.0.0.1:{port}/cdc/0")

    client = redis_client.connect(url, decode_responses=True, socket_timeout=5)
    key = f"sentinel-test:{time.time_ns()}"
    client.set(key, "through sentinel", ex=60)
    direct = redis_client.connect(redis_url.geturl(), decode_responses=True)
    assert direct.get(key) == "through sentinel"
    assert client.connection_pool.get_master_address() == (redis_url.hostname, redis_url.port)
