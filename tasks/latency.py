"""How long notifications waited from their enqueue to their provider call, by priority
class: a histogram on ``/metrics`` (per class and provider), and the latest samples in
Redis, from which the operator page shows each class's current p99 whichever worker
made the calls.

Recorded as the calls are about to leave (their ``sending`` committed): one pipeline
of two Redis commands a dispatch, the samples of a class kept to the last
:data:`SAMPLES` and to the last :data:`WINDOW` seconds.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from observe.metrics import ENQUEUE_TO_CALL
from scheduler.priority import ORDER, Priority
from tasks.runtime import Runtime

log = logging.getLogger(__name__)

#: samples kept a class (the latest)
SAMPLES = 1000
#: samples older than this are not "current" (seconds)
WINDOW = 300.0


class Called(Protocol):
    """What a row being called tells: whom it goes through, its class, when it came."""

    @property
    def provider(self) -> str: ...

    @property
    def priority(self) -> str: ...

    @property
    def created_at(self) -> float: ...


def samples_key(priority: Priority) -> str:
    return f"nq:latency:{priority.value}"


def record(rt: Runtime, rows: Sequence[Called], at: float) -> None:
    """``rows`` are being called at ``at`` (epoch seconds, the clock their
    ``created_at`` was stamped with)."""
    by_class: dict[Priority, list[str]] = defaultdict(list)
    for row in rows:
        waited = max(0.0, at - row.created_at)
        priority = Priority(row.priority)
        ENQUEUE_TO_CALL.labels(priority.value, row.provider).observe(waited)
        by_class[priority].append(f"{at:.3f}:{waited:.4f}")
    try:
        with rt.redis.pipeline(transaction=False) as pipe:
            for priority, samples in by_class.items():
                pipe.lpush(samples_key(priority), *samples)
                pipe.ltrim(samples_key(priority), 0, SAMPLES - 1)
            pipe.execute()
    except RedisError as exc:  # a lost sample never costs a call
        log.debug("latency samples not kept (%s)", type(exc).__name__)


@dataclass(frozen=True)
class Current:
    """A class's recent enqueue→call waits: how many, and their 99th percentile."""

    priority: str
    samples: int
    p99: float | None


def current(rt: Runtime, now: float) -> list[Current]:
    """Each class's samples of the last :data:`WINDOW` seconds, most urgent first."""
    with rt.redis.pipeline(transaction=False) as pipe:
        for priority in ORDER:
            pipe.lrange(samples_key(priority), 0, SAMPLES - 1)
        found = pipe.execute()
    out = []
    for priority, raw in zip(ORDER, found, strict=True):
        waits = sorted(
            float(wait)
            for at, wait in (item.decode().split(":") for item in raw)
            if float(at) >= now - WINDOW
        )
        p99 = waits[min(len(waits) - 1, math.ceil(0.99 * len(waits)) - 1)] if waits else None
        out.append(Current(priority.value, len(waits), p99))
    return out
