"""Redis clients from one URL form, a single server or a Sentinel-managed master.

- ``redis://:password@host:port/db`` and ``rediss://`` (TLS): redis-py's own URLs.
- ``redis+sentinel://:password@sentinel1:26379,sentinel2:26379/<master name>/<db>``: the
  master that the Sentinels name, found again after a failover. The password is the master's;
  Sentinels without a password of their own are assumed (``sentinel_password`` otherwise).

The stream's sink, the DAGs' hooks and the tools all connect through :func:`connect`, so a
deployment changes only the ``redis_default`` connection (see ``hooks.redis.redis_url_of``).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    password: str | None


def parse_sentinel_url(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL: {parts.scheme}://")
    netloc = parts.netloc.rsplit("@", 1)
    auth, hosts = (netloc[0], netloc[1]) if len(netloc) == 2 else ("", netloc[0])
    password = unquote(auth.split(":", 1)[1]) if ":" in auth else None
    sentinels = []
    for hostport in hosts.split(","):
        host, _, port = hostport.rpartition(":")
        if not host:
            host, port = port, "26379"
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(f"{SENTINEL_SCHEME} URL without a master name: .../<master name>/<db>")
    return SentinelTarget(tuple(sentinels), path[0], int(path[1]) if len(path) > 1 else 0, password or None)


def connect(url: str, **kwargs):
    """A redis-py client for ``url``; ``kwargs`` (timeouts, retries, decode_responses) apply
    to the connection with the server that answers the commands."""
    import redis

    if not url.startswith(f"{SENTINEL_SCHEME}://"):
        return redis.Redis.from_url(url, **kwargs)
    from redis.sentinel import Sentinel

    target = parse_sentinel_url(url)
    sentinel = Sentinel(list(target.sentinels), socket_timeout=kwargs.get("socket_timeout", 5))
    return sentinel.master_for(target.master, db=target.db, password=target.password, **kwargs)
