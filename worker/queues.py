"""The broker's queues, in the order every worker takes them.

:data:`QUEUES` is the one table: a queue is declared, consumed and taken in its place by
appearing there. The beat's control tasks come first, so a deep backlog of sends never
delays the pump that releases deferred ones; then one queue per priority class
(scheduler/priority.py), urgent before normal before bulk, so a verification code
never sits behind campaign rows already in Redis.
Webhook deliveries have a queue of their own between normal and bulk: a slow receiver
never holds up a send's queue, and a campaign's backlog never holds up an event.

Why the order holds (kombu's Redis transport, ``kombu/transport/redis.py``): a worker
asks Redis for its next message with one ``BRPOP key1 key2 … timeout``, and Redis pops
from the *first non-empty list in the order the keys are given*. Which order kombu gives
them is its ``queue_order_strategy``:

- ``round_robin`` (kombu's default) moves the queue just served to the end of the list
  after every message, so a backlog of bulk would take every other message: not ours.
- ``priority`` keeps the list as it was first built, but that list comes from
  ``Channel.active_queues``, a *set*: its order is the strings' hash order, which
  changes with every process (``PYTHONHASHSEED``). Not an order at all.
- ``sorted`` sorts by name, which would tie the order to the spelling of the names.

So the strategy is our own cycle, :class:`InTableOrder`, named to kombu by its import
path (kombu resolves ``queue_order_strategy`` with ``symbol_by_name``): it never rotates
and always lists the queues in :data:`QUEUES`'s order. Each queue also has kombu's
per-message priority sub-lists (``priority_steps``); notifyq never sets a message
priority, so :data:`PRIORITY_STEPS` is just ``[0]``: one key per queue in the BRPOP.

With ``worker_prefetch_multiplier`` 1 and late acks, a worker issues that BRPOP only
when one of its threads is free (kombu's QoS counts the unacknowledged messages), so the
choice of class is made at the moment a thread can start the work, never earlier:
nothing urgent waits in a worker's local buffer behind bulk it fetched before.

And a worker's threads are never all bulk: while bulk tasks hold :data:`BULK_THREADS`'
share of them (``NOTIFYQ_BULK_SHARE``, counted by worker/lanes.py from the moment a
bulk message is received, before the next BRPOP is issued), the cycle leaves the bulk
queue out of the BRPOP, so the threads left free only ever take control, urgent or
normal work: a worker full of campaign work still takes a code at once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable

#: the beat's control tasks (release, sweep, report polls, campaigns)
CONTROL_QUEUE = "notifyq.control"
#: dispatch messages of each priority class
URGENT_QUEUE = "notifyq.urgent"
NORMAL_QUEUE = "notifyq"
BULK_QUEUE = "notifyq.bulk"
#: where a dispatch goes when it names no class: the normal queue
DISPATCH_QUEUE = NORMAL_QUEUE

#: webhook deliveries: a slow receiver never holds up a send, and a campaign never holds up
#: an event (it comes before bulk)
WEBHOOK_QUEUE = "notifyq.webhooks"

#: every queue a worker consumes, in the order it takes them when several hold messages
QUEUES: tuple[str, ...] = (CONTROL_QUEUE, URGENT_QUEUE, NORMAL_QUEUE, WEBHOOK_QUEUE, BULK_QUEUE)

#: the dispatch queue of each priority class (scheduler/priority.py's values)
DISPATCH_QUEUES: dict[str, str] = {
    "urgent": URGENT_QUEUE,
    "normal": NORMAL_QUEUE,
    "bulk": BULK_QUEUE,
}

#: kombu's per-message priority sub-lists: none (see the module docstring)
PRIORITY_STEPS = [0]
#: kombu's ``queue_order_strategy``: :class:`InTableOrder`, by import path
QUEUE_ORDER_STRATEGY = f"{__name__}:InTableOrder"


def table_rank(queue: str) -> int:
    """Where ``queue`` stands in :data:`QUEUES` (a queue not there: after them all)."""
    try:
        return QUEUES.index(queue)
    except ValueError:
        return len(QUEUES)


class ThreadShare:
    """Which tasks of this worker hold (or are about to hold) a thread with bulk work,
    against the most that may."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: set[str] = set()
        #: the most threads bulk may hold; None: no limit (not a worker, or not yet ready)
        self.limit: int | None = None

    def configure(self, threads: int, share: float) -> None:
        """``share`` of ``threads``, at least one (a worker of one thread still runs bulk)."""
        self.limit = max(1, math.floor(threads * share))

    def enter(self, task_id: str) -> None:
        with self._lock:
            self._holders.add(task_id)

    def leave(self, task_id: str) -> None:
        with self._lock:
            self._holders.discard(task_id)

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._holders)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.held >= self.limit


#: this worker process's bulk threads (one process, one count)
BULK_THREADS = ThreadShare()


class InTableOrder:
    """kombu's queue cycle, always in :data:`QUEUES`'s order (never rotated).

    The same interface as ``kombu.utils.scheduling.priority_cycle``: ``update`` with the
    channel's active queues, ``consume(n)`` for the BRPOP's keys, ``rotate`` after a
    message (a no-op here)."""

    def __init__(self, it: Iterable[str] | None = None) -> None:
        self.items: list[str] = sorted(it or (), key=lambda q: (table_rank(q), q))

    def update(self, it: Iterable[str]) -> None:
        self.items[:] = sorted(it, key=lambda q: (table_rank(q), q))

    def consume(self, n: int) -> list[str]:
        """The queues to BRPOP: in the table's order, without bulk while bulk holds its
        share of the threads."""
        if BULK_THREADS.full:
            return [q for q in self.items[:n] if q != BULK_QUEUE]
        return self.items[:n]

    def rotate(self, last_used: str) -> str:
        return last_used
