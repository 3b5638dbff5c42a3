"""Group commit without a timer: what many callers of one process want written at the
same moment is written in one transaction.

A leader/follower queue. The caller that finds no group running leads one at once with
whatever is waiting (itself, at least); callers arriving meanwhile wait and form the
next group, led by the first of them once this one is done — so no caller writes for
others longer than one group, and a lone caller waits for nothing. A failed group (a
database error) is written again one caller at a time, so one caller's failure is never
another's.

The module holds that logic once for both kinds of caller:

- :class:`GroupQueue` decides who leads and what a group holds, and
  :func:`write_group` writes one, retrying a failed group one by one; neither waits.
- :class:`Groups` is the queue for threads (a producer's ``enqueue()`` calls, a worker's
  dispatch writes): each waits on an event of its own.
- The API's coroutines (``api/coalesce.py``) wait on futures of their event loop, with a
  drainer task as the leader, on the same queue and the same :func:`write_group`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")
W = TypeVar("W")


@dataclass(frozen=True)
class Settled(Generic[R]):
    """One caller's answer from a written group: its result, or the error its own write
    (alone, once the group had failed) raised."""

    result: R | None = None
    error: Exception | None = None


def write_group(
    run: Callable[[list[P]], list[R]],
    payloads: list[P],
    *,
    what: str,
    after: Callable[[list[R]], None] | None = None,
    fails_all: Callable[[Exception], bool] | None = None,
) -> list[Settled[R]]:
    """``run`` the payloads as one write; if it raises, each payload alone. One answer per
    payload, in order. ``after(results)`` follows each write that succeeded: its failure is
    logged, never retried (the rows are written; writing them again would double them).
    ``fails_all(error)``: an error every payload would meet on its own (the store away),
    answered to all of them at once instead of tried one by one."""
    try:
        results = run(payloads)
    except Exception as exc:
        if len(payloads) == 1 or (fails_all is not None and fails_all(exc)):
            return [Settled(error=exc) for _ in payloads]
        log.warning(
            "a group of %d %s failed (%s); each is tried on its own",
            len(payloads),
            what,
            type(exc).__name__,
        )
        return [
            settled
            for payload in payloads
            for settled in write_group(run, [payload], what=what, after=after)
        ]
    if after is not None:
        try:
            after(results)
        except Exception:
            log.exception("after a group of %d %s was written", len(payloads), what)
    return [Settled(result=r) for r in results]


class GroupQueue(Generic[W]):
    """Who leads and what a group holds. Safe from any thread; it never waits itself."""

    def __init__(self, max_group: int) -> None:
        self._max_group = max_group
        self._lock = threading.Lock()
        self._waiting: list[W] = []
        self._running = False

    def __len__(self) -> int:
        """How many wait for a group."""
        with self._lock:
            return len(self._waiting)

    def join(self, item: W) -> bool:
        """Queue ``item``; True when its caller leads (no group was running)."""
        with self._lock:
            self._waiting.append(item)
            lead = not self._running
            self._running = True
            return lead

    def take(self) -> list[W]:
        """The leader's group: the oldest waiting items, at most ``max_group``."""
        with self._lock:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
            return group

    def finish(self) -> W | None:
        """The group is written: the first item still waiting leads the next one (returned);
        None when nothing waits, and the next caller to join leads."""
        with self._lock:
            if self._waiting:
                return self._waiting[0]
            self._running = False
            return None


class _Slot(Generic[P, R]):
    """One waiting thread: what it wants written, and the answer it gets."""

    __slots__ = ("done", "lead", "payload", "settled")

    def __init__(self, payload: P) -> None:
        self.payload = payload
        self.done = threading.Event()
        self.lead = False  # woken to lead the next group, not with an answer
        self.settled: Settled[R] | None = None


class Groups(Generic[P, R]):
    """``submit(rt, payload)`` from any thread; ``run(rt, payloads)`` writes a group in
    one transaction and answers one result per payload, in order; ``after(rt, results)``
    follows a written group (its failure is not the group's: nothing is written twice)."""

    def __init__(
        self,
        run: Callable[[Any, list[P]], list[R]],
        *,
        what: str,
        max_group: int,
        after: Callable[[Any, list[R]], None] | None = None,
    ) -> None:
        self._run = run
        self._after = after
        self._what = what
        self.queue: GroupQueue[_Slot[P, R]] = GroupQueue(max_group)
        #: groups written and calls served (for benchmarks)
        self.groups = 0
        self.served = 0

    def submit(self, rt: Any, payload: P) -> R:
        slot: _Slot[P, R] = _Slot(payload)
        lead = self.queue.join(slot)
        while slot.settled is None:
            if lead:
                self._lead(rt)
            slot.done.wait()
            lead, slot.lead = slot.lead, False
            slot.done.clear()
        if slot.settled.error is not None:
            raise slot.settled.error
        return slot.settled.result  # type: ignore[return-value]

    def _lead(self, rt: Any) -> None:
        group = self.queue.take()
        try:
            self._write(rt, group)
        finally:
            following = self.queue.finish()
            if following is not None:
                following.lead = True
                following.done.set()

    def _write(self, rt: Any, group: Sequence[_Slot[P, R]]) -> None:
        after = self._after
        settled = write_group(
            lambda payloads: self._run(rt, payloads),
            [slot.payload for slot in group],
            what=self._what,
            after=None if after is None else (lambda results: after(rt, results)),
        )
        self.groups += 1
        self.served += len(group)
        for slot, answer in zip(group, settled, strict=True):
            slot.settled = answer
            slot.done.set()
