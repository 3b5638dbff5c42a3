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


Bulk (a campaign's rows) holds at most ``bulk_share`` of the budget
(``NOTIFYQ_BULK_SHARE``): a worker busy with a campaign always has units free for a code
or a single notification, which therefore never waits here for bulk calls to finish.
Urgent and normal work may use the whole budget, the bulk units included.
"""

from __future__ import annotations

import math
import threading


class CallBudget:
    """A counting budget: :meth:`take` blocks until ``n`` units are free (``n`` capped at
    the whole budget — or, for bulk, at its share — so a task larger than that still
    runs, alone)."""

    def __init__(self, capacity: int, *, bulk_share: float = 1.0) -> None:
        if capacity < 1:
            raise ValueError("a call budget needs at least one unit")
        if not 0 < bulk_share <= 1:
            raise ValueError("bulk's share of a call budget is more than 0, at most 1")
        self.capacity = capacity
        #: the most units bulk may hold at once (at least one, or bulk could never run)
        self.bulk_capacity = max(1, math.floor(capacity * bulk_share))
        self._free = capacity
        self._bulk_held = 0
        self._changed = threading.Condition()
        #: tasks waiting for units now (what a gauge or a test watches)
        self.waiting = 0
        #: the most units ever held at once, and by bulk (for tests and benchmarks)
        self.high_water = 0
        self.bulk_high_water = 0

    def take(self, n: int, *, bulk: bool = False) -> int:
        """Wait for ``min(n, capacity)`` free units (bulk: also within its share), hold
        them, and say how many. Give them back with :meth:`give` and the same ``bulk``."""
        wanted = min(max(n, 0), self.bulk_capacity if bulk else self.capacity)
        with self._changed:
            self.waiting += 1
            try:
                if bulk:
                    self._changed.wait_for(
                        lambda: (
                            self._free >= wanted and self._bulk_held + wanted <= self.bulk_capacity
                        )
                    )
                    self._bulk_held += wanted
                    self.bulk_high_water = max(self.bulk_high_water, self._bulk_held)
                else:
                    self._changed.wait_for(lambda: self._free >= wanted)
            finally:
                self.waiting -= 1
            self._free -= wanted
            self.high_water = max(self.high_water, self.capacity - self._free)
        return wanted

    def give(self, n: int, *, bulk: bool = False) -> None:
        """Give back units :meth:`take` handed out."""
        if n <= 0:
            return
        with self._changed:
            self._free = min(self.capacity, self._free + n)
            if bulk:
                self._bulk_held = max(0, self._bulk_held - n)
            self._changed.notify_all()

    @property
    def held(self) -> int:
        with self._changed:
            return self.capacity - self._free
