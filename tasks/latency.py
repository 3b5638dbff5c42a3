"""How long notifications waited from their enqueue to their provider call, by priority
class: a histogram on ``/metrics`` (per class and provider), and the latest samples in
Redis, from which the operator page shows each class's current p99 whichever worker
made the calls.

Recorded as the calls are about to leave (their ``sending`` committed). The histogram
is observed at once; the samples wait in the process and go to Redis at most every
:data:`FLUSH_EVERY` seconds, two commands a class for every dispatch of that time
together (not two a dispatch: a worker sending one notification a task would spend
a third of its Redis commands on them). The samples of a class are kept to the last
:data:`SAMPLES` and to the last :data:`WINDOW` seconds, so a current p99 is at most
:data:`FLUSH_EVERY` behind.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from redis import Redis
from redis.exceptions import RedisError

from observe.metrics import ENQUEUE_TO_CALL
from scheduler.priority import ORDER, Priority
from tasks.runtime import Runtime

log = logging.getLogger(__name__)

#: samples kept a class (the latest)
SAMPLES = 1000
#: samples older than this are not "current" (seconds)
WINDOW = 300.0
#: the longest a sample waits in its process before it goes to Redis (seconds)
FLUSH_EVERY = 1.0


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


@dataclass
class _Pending:
    """One process's samples not yet in one Redis, by class, and when they last went."""

    samples: dict[Priority, list[str]] = field(default_factory=lambda: defaultdict(list))
    flushed: float = 0.0
    #: a flush is due on a timer (so an idle process's last samples still go)
    due: bool = False
    pid: int = field(default_factory=os.getpid)
    lock: threading.Lock = field(default_factory=threading.Lock)


#: Redis client → what waits for it (a test's Redis is not another test's)
_PENDING: weakref.WeakKeyDictionary[Redis, _Pending] = weakref.WeakKeyDictionary()
_PENDING_LOCK = threading.Lock()


def _pending(client: Redis) -> _Pending:
    with _PENDING_LOCK:
        found = _PENDING.get(client)
        if found is None or found.pid != os.getpid():  # a forked child starts afresh
            found = _PENDING[client] = _Pending()
        return found


def record(rt: Runtime, rows: Sequence[Called], at: float) -> None:
    """``rows`` are being called at ``at`` (epoch seconds, the clock their
    ``created_at`` was stamped with)."""
    pending = _pending(rt.redis)
    with pending.lock:
        for row in rows:
            waited = max(0.0, at - row.created_at)
            priority = Priority(row.priority)
            ENQUEUE_TO_CALL.labels(priority.value, row.provider).observe(waited)
            pending.samples[priority].append(f"{at:.3f}:{waited:.4f}")
        wait = pending.flushed + FLUSH_EVERY - time.monotonic()
        timer = wait > 0 and not pending.due
        pending.due = pending.due or timer
    if wait <= 0:
        flush(rt)
    elif timer:
        later = threading.Timer(wait, flush, (rt,))
        later.daemon = True
        later.start()


def flush(rt: Runtime) -> None:
    """Send this process's waiting samples to Redis now (one pipeline)."""
    pending = _pending(rt.redis)
    with pending.lock:
        by_class, pending.samples = pending.samples, defaultdict(list)
        pending.flushed, pending.due = time.monotonic(), False
    if not by_class:
        return
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
    """Each class's samples of the last :data:`WINDOW` seconds, most urgent first
    (this process's waiting samples included)."""
    flush(rt)
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
