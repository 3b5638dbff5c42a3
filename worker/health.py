"""``notifyq healthcheck SERVICE``: is this container's process doing its job?

Each check asks the process for a sign of work, not just of life:

- ``api``: ``/readyz`` answers 200: the store answers a query and Redis takes a write
  (``/healthz`` is liveness only: it answers while they are away);
- ``worker``: a worker on this host (``…@<hostname>``: each container has its own)
  answers a Celery ping on the broker: it holds its broker connection and its control
  loop turns, which a process stuck in start-up or cut off from Redis does not;
- ``beat``: beat's schedule file was rewritten lately (beat rewrites it as it sends
  tasks, at least every three minutes);
- ``flower``: Flower's own ``/healthcheck`` answers.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from config.settings import Settings
from worker.app import celery
from worker.beat import BEAT_SCHEDULE


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
        return _beat_schedule_age(max_age)
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


def _beat_schedule_age(max_age: float, directory: Path = Path("var")) -> str | None:

    files = list(directory.glob(BEAT_SCHEDULE.name + "*"))
    if not files:
        return f"no schedule file {BEAT_SCHEDULE}* yet"
    age = time.time() - max(f.stat().st_mtime for f in files)
    return None if age <= max_age else f"schedule file not rewritten for {age:.0f} s"
