"""A Redis client from a URL, for state that may live on a Redis of its own (the caps).

Three kinds of URL, so the caps can follow the deployment (docs/capacity.md):

- ``redis://``, ``rediss://``, ``unix://`` — one Redis (redis-py's ``from_url``);
- ``sentinel://[:password@]host:port[,host:port…]/<service>[/<db>]`` — the current
  master of ``<service>`` as the Sentinels name it; redis-py's ``Sentinel`` asks them
  again after a fail-over, so a promoted replica is found without a restart. The
  password, if any, is the master's (Sentinels without auth, as usually deployed);
- ``redis+cluster://host:port[,host:port…]`` — a Redis Cluster (``RedisCluster``): every
  caps script touches one key whose hash tag is the number, so each runs on that
  number's node (tests/scheduler/test_caps_cluster.py).

The broker itself is Celery's (kombu's) connection: for a ``sentinel://`` broker URL,
worker/app.py gives kombu its own form (``sentinel://host:26379;sentinel://host2:26379``
plus the transport option ``master_name``), while the runtime's other Redis clients
(deferred set, claims, circuit) come through here from the same URL.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis import Redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel


def _hosts(netloc: str, default_port: int) -> tuple[str | None, list[tuple[str, int]]]:
    password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        password = unquote(auth.split(":", 1)[1]) if ":" in auth else unquote(auth) or None
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        hosts.append((host, int(port)) if host else (part, default_port))
    return password, hosts


def redis_client(url: str, **options: Any) -> Redis:
    """A client for ``url`` (see the module docstring); ``options`` go to the connections
    (timeouts, pool size), whatever the kind."""
    parts = urlsplit(url)
    if parts.scheme == "sentinel":
        password, hosts = _hosts(parts.netloc, 26379)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a sentinel:// URL names the service: sentinel://host:port/<service>")
        service, db = path[0], int(path[1]) if len(path) > 1 else 0
        timeouts = {
            k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")
        }
        # redis-py leaves Sentinel, master_for and ClusterNode unannotated
        sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, **timeouts)  # type: ignore[no-untyped-call]
        rest = {k: v for k, v in options.items() if k not in timeouts}
        master = sentinel.master_for(service, db=db, password=password, **timeouts, **rest)  # type: ignore[no-untyped-call]
        return cast(Redis, master)
    if parts.scheme == "redis+cluster":
        password, hosts = _hosts(parts.netloc, 6379)
        cluster_options = {k: v for k, v in options.items() if k != "health_check_interval"}
        return RedisCluster(  # type: ignore[return-value]
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],  # type: ignore[no-untyped-call]
            password=password,
            **cluster_options,
        )
    return Redis.from_url(url, **options)
