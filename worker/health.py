"""``notifyq healthcheck SERVICE``: is this container's process doing its job?

Each check asks the process for a sign of work, not just of life:

- ``api``: ``/readyz`` answers 200: the store answers a query and Redis takes a write
  (``/healthz`` is liveness only: it answers while they are away);
- ``worker``: a worker on this host (``…@<hostname>``: each container has its own)
  answers a Celery ping on the broker: it holds its broker connection and its control
  loop turns, which a process stuck in start-up or cut off from Redis does not;
- ``beat``: beat's heartbeat file was touched lately (each turn of the beat, at least
  once a second while it runs; worker/beat_scheduler.py);
- ``flower``: Flower's own ``/healthcheck`` answers.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from config.settings import Settings
from worker.app import celery
from worker.beat_scheduler import HEARTBEAT


def check(
    service: str, settings: Settings, *, url: str | None = None, max_age: float = 240.0
) -> str | None:
    """None if healthy, else why not (one line)."""
    if service == "api":
        return _http(url or "http://127.0.0.1:8000/readyz")
    if service == "flower":
        return _http(url or "http://127.0.0.1:5555/healthcheck")
    if service == "worker":
        return _worker_ping()
    if service == "beat":
        return _heartbeat_age(max_age)
    return f"unknown service {service!r} (api, worker, beat or flower)"


def _http(url: str) -> str | None:
    try:
        answer = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}"
    return None if answer.status_code == 200 else f"{url} answered {answer.status_code}"


def _worker_ping() -> str | None:

    host = socket.gethostname()
    try:
        replies = celery.control.ping(timeout=5)
    except Exception as exc:  # a broker that cannot be reached is an unhealthy worker
        return f"ping failed: {type(exc).__name__}"
    # each container has its own host name: a node on it is this container's worker
    ours = [node for reply in replies for node in reply if node.endswith(f"@{host}")]
    return None if ours else f"no worker on {host} answered a ping"


def _heartbeat_age(max_age: float, heartbeat: Path = HEARTBEAT) -> str | None:
    if not heartbeat.exists():
        return f"no heartbeat file {heartbeat} yet"
    age = time.time() - heartbeat.stat().st_mtime
    return None if age <= max_age else f"heartbeat file not rewritten for {age:.0f} s"
