"""Group commit without a timer: what many threads of one process want written at the
same moment is written in one transaction.

A leader/follower queue. The call that finds no group running leads one at once with
whatever is waiting (itself, at least); calls arriving meanwhile wait and form the next
group, led by the first of them once this one is done — so no thread writes for others
longer than one group, and a lone call waits for nothing. A failed group (a database
error) is tried again one call at a time, so one call's failure is never another's.

Used by the producer (``tasks/enqueue.py``: threads' single ``enqueue()`` calls share one
INSERT) and the worker (``tasks/writes.py``: concurrent dispatch tasks share one write).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


class _Slot(Generic[P, R]):
    """One waiting call: what it wants written, and the answer or the error it gets."""

    __slots__ = ("answer", "done", "error", "lead", "payload")

    def __init__(self, payload: P) -> None:
        self.payload = payload
        self.done = threading.Event()
        self.lead = False  # woken to lead the next group, not with an answer
        self.answer: R | None = None
        self.error: BaseException | None = None


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
        self._max_group = max_group
        self._lock = threading.Lock()
        self._waiting: list[_Slot[P, R]] = []
        self._running = False
        #: groups written and calls served (for benchmarks)
        self.groups = 0
        self.served = 0

    def submit(self, rt: Any, payload: P) -> R:
        slot: _Slot[P, R] = _Slot(payload)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._running
            self._running = True
        while True:
            if lead:
                self._lead(rt)
            slot.done.wait()
            if slot.lead and slot.answer is None and slot.error is None:
                slot.lead = False
                slot.done.clear()
                lead = True
                continue
            break
        if slot.error is not None:
            raise slot.error
        assert slot.answer is not None
        return slot.answer

    def _lead(self, rt: Any) -> None:
        with self._lock:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
        try:
            self._write(rt, group)
        finally:
            with self._lock:
                if self._waiting:  # the next group's first call leads it
                    nxt = self._waiting[0]
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._running = False

    def _write(self, rt: Any, group: list[_Slot[P, R]]) -> None:
        try:
            results = self._run(rt, [slot.payload for slot in group])
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
                group[0].done.set()
                return
            log.warning(
                "a group of %d %s failed (%s); each is tried on its own",
                len(group),
                self._what,
                type(exc).__name__,
            )
            for slot in group:
                self._write(rt, [slot])
            return
        self.groups += 1
        self.served += len(group)
        try:
            if self._after is not None:
                self._after(rt, results)
        finally:
            for slot, result in zip(group, results, strict=True):
                slot.answer = result
                slot.done.set()
