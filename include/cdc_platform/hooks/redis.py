"""Redis clients and URLs from Airflow connections."""
from __future__ import annotations

from cdc_platform import redis_client as redis_client_module
from cdc_platform.connections import REDIS_CONN_ID


def redis_client(conn_id: str = REDIS_CONN_ID):
    """The provider's client; through the Sentinels when the connection names a master (the
    provider's hook connects to one server only)."""
    url = redis_url(conn_id)
    if url.startswith(f"{redis_client_module.SENTINEL_SCHEME}://"):
        return redis_client_module.connect(url)
    from airflow.providers.redis.hooks.redis import RedisHook

    return RedisHook(redis_conn_id=conn_id).get_conn()


def redis_url(conn_id: str = REDIS_CONN_ID) -> str:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return redis_url_of(conn.host, conn.port, conn.password, conn.extra_dejson or {})


def redis_url_of(host: str, port: int | None, password: str | None, extra: dict) -> str:
    """A URL for ``redis_client.connect``: the password as auth, extra ``db``, extra ``ssl``
    for TLS (rediss), and extra ``sentinel_master`` to reach that master through the Sentinels
    listed in ``host`` (``s1:26379,s2:26379``; ``port`` is the default Sentinel port)."""
    from urllib.parse import quote

    auth = f":{quote(password, safe='')}@" if password else ""
    db = extra.get("db", 0)
    if extra.get("sentinel_master"):
        sentinels = ",".join(h if ":" in h else f"{h}:{port or 26379}" for h in host.split(","))
        return f"{redis_client_module.SENTINEL_SCHEME}://{auth}{sentinels}/{extra['sentinel_master']}/{db}"
    scheme = "rediss" if str(extra.get("ssl", "")).lower() in ("true", "1") else "redis"
    return f"{scheme}://{auth}{host}:{port or 6379}/{db}"
