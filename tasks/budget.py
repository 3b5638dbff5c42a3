"""How many provider calls a worker process has admitted and not yet finished.

A call admitted against a number's caps must leave within the cap margin (0.5 s) of its
admission, or it is admitted again (one more cap decision, providers/http.py) or not
sent. Without a bound, a worker admitted whatever its threads carried — 64 threads × 50
ids = 3,200 calls — while its HTTP pool holds 400 connections and its one event loop
starts a few hundred calls a second: most calls waited for a connection past their
deadline and were admitted 3–4 times each (``bench/dispatch.py``: 4.7 cap decisions
and 18 Redis commands per sent notification, batched, against 1.2 and 8 one at a time).

So a dispatch takes one unit of this budget per row *before* it claims and admits them,
and gives them back once its calls are answered: admission runs no further ahead of
the calls than the process can carry. A task that cannot have its units waits, holding
nothing else (no claim, no cap slot, its message unacknowledged); tasks waiting longer
only mean fewer calls admitted in vain.
"""

from __future__ import annotations

import threading


class CallBudget:
    """A counting budget: :meth:`take` blocks until ``n`` units are free (``n`` capped at
    the whole budget, so a task larger than it still runs, alone)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a call budget needs at least one unit")
        self.capacity = capacity
        self._free = capacity
        self._changed = threading.Condition()
        #: the most units ever held at once (for tests and benchmarks)
        self.high_water = 0

    def take(self, n: int) -> int:
        """Wait for ``min(n, capacity)`` free units, hold them, and say how many."""
        wanted = min(max(n, 0), self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= wanted)
            self._free -= wanted
            self.high_water = max(self.high_water, self.capacity - self._free)
        return wanted

    def give(self, n: int) -> None:
        """Give back units :meth:`take` handed out."""
        if n <= 0:
            return
        with self._changed:
            self._free = min(self.capacity, self._free + n)
            self._changed.notify_all()

    @property
    def held(self) -> int:
        with self._changed:
            return self.capacity - self._free
