"""Beat's tasks that must not overlap (the sweeper, the campaigns' fan-out, retention) run
under a Redis lock with a TTL: a second beat's copy, or a run still going when the next
is due, finds the lock held and skips; a worker that dies mid-run frees it at the TTL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.runtime import Runtime


def alone(
    rt: Runtime, lock_name: str, ttl: float, work: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``work()``'s counts, or ``{"skipped": 1}`` when another run holds ``lock_name``."""
    lock = rt.redis.lock(lock_name, timeout=ttl, blocking=False)
    if not lock.acquire():
        return {"skipped": 1}
    try:
        return work()
    finally:
        lock.release()
