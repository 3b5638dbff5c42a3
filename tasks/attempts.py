"""The cap slots of one dispatch's sends, from admission to the answer, in one owner.

A call admitted against a number's caps takes a *slot*: the attempt recorded in the
number's log (scheduler/caps.py). The slot belongs to the send. It goes back if the
request never leaves (another copy of the task won the row, the transport could not
write it, it was not let leave), it stays if the request left; and since two calls
must not reach the provider closer together than its cap allows, the request must
leave within the cap margin of the moment its slot was taken. :class:`Attempts` holds
all of it, so no other module takes, renews or gives back a slot:

- :meth:`Attempts.take` asks the caps for every candidate in one round trip, noting
  ``time.monotonic()`` just before: no slot is stamped earlier, so a deadline of that
  moment + the margin is never later than the stamp + the margin, however long the
  answer takes to come back;
- :meth:`Attempts.spent` and :meth:`Attempts.renew`: a round of requests whose margin
  is mostly spent before they are built (a long ``sending`` commit, a split after a
  whole round trip) is admitted again in one batch, so its calls start with a whole
  margin;
- :meth:`Attempts.may_write` is the one question the transport asks just before a
  request is written (providers/http.py): in time, yes, without a word to Redis; past
  its deadline, the request's numbers are admitted again at that moment (the slots
  given back and taken anew: every request asking at once in one refund round trip
  and one hit round trip), so the attempt counts from when it really goes. If another
  attempt took a number's room meanwhile, the answer is no, and the slots just taken
  for the request's other numbers go back;
- :meth:`Attempts.give_back` returns the slots of whatever did not leave, all in one
  pipelined call;
- :meth:`Attempts.detail` is what the ``sending`` event records of a row's slot (the
  caps' floor reads it: scheduler/caps_floor.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Collection, Sequence

from config.settings import ProviderPolicy
from observe.metrics import CAP_LATENCY
from providers.http import MayWrite
from scheduler.caps import CapCheck, CapLimiter, Decision
from scheduler.caps_floor import admitted_detail
from store import NotificationRow

log = logging.getLogger(__name__)

#: how many times one request may be admitted again before the answer is no (a loop so
#: busy that a fresh margin runs out before the request can be written)
MAX_RENEWALS = 3


class Attempts:
    """The slots one dispatch holds, each row's deadline, and how often it was renewed.

    Safe from any thread: the transport asks :meth:`may_write` from threads of its own
    while the dispatch's thread waits for the answers."""

    def __init__(
        self, caps: CapLimiter, policies: dict[str, ProviderPolicy], margin: float
    ) -> None:
        self._caps = caps
        self._policies = policies
        self._margin = margin
        self._rows: dict[int, NotificationRow] = {}
        #: id → the decision that recorded its attempt (what a refund takes back)
        self._slots: dict[int, Decision] = {}
        #: id → ``time.monotonic()`` by which its request must be written
        self._deadlines: dict[int, float] = {}
        self._renewals: Counter[int] = Counter()
        self._lock = threading.Lock()

    def _check(self, row: NotificationRow) -> CapCheck:
        return CapCheck(row.provider, row.to, self._policies[row.provider].caps)

    def take(self, rows: Sequence[NotificationRow]) -> list[tuple[NotificationRow, Decision]]:
        """Take a slot for each of ``rows`` (one round trip); the rows a cap refused come
        back with the refusing decision, the others are held here."""
        checks = [self._check(row) for row in rows]
        asked = time.monotonic()  # before any stamp: the deadline is never late
        with CAP_LATENCY.time():
            decisions = self._caps.hit_many(checks)
        refused: list[tuple[NotificationRow, Decision]] = []
        with self._lock:
            for row, decision in zip(rows, decisions, strict=True):
                if decision.allowed:
                    self._rows[row.id] = row
                    self._slots[row.id] = decision
                    self._deadlines[row.id] = asked + self._margin
                else:
                    refused.append((row, decision))
        return refused

    @property
    def admitted(self) -> list[NotificationRow]:
        """The rows holding a slot, in the order they were taken."""
        with self._lock:
            return [self._rows[i] for i in self._slots]

    @property
    def slots(self) -> dict[int, Decision]:
        """id → the decision that recorded its attempt, for the rows holding a slot."""
        with self._lock:
            return dict(self._slots)

    def detail(self, notification_id: int) -> dict[str, int] | None:
        """What the ``sending`` event keeps of the row's slot (scheduler/caps_floor.py)."""
        with self._lock:
            return admitted_detail(self._slots.get(notification_id))

    def spent(self, ids: Collection[int]) -> bool:
        """Whether more than half the margin of any of ``ids`` is gone."""
        with self._lock:
            left = min((self._deadlines[i] for i in ids if i in self._deadlines), default=None)
        return left is not None and left - time.monotonic() < self._margin / 2

    def renew(self, requests: Sequence[Sequence[int]]) -> list[bool]:
        """Admit each request (the ids it carries) again at this moment: True, with a
        whole margin from now; False, its numbers' room was taken meanwhile (or it was
        renewed too often): it is not to be sent, and holds no slot any more."""
        with self._lock:
            held = [[i for i in ids if i in self._slots] for ids in requests]
            spent = [any(self._renewals[i] >= MAX_RENEWALS for i in ids) for ids in held]
            flat = [i for ids, over in zip(held, spent, strict=True) if not over for i in ids]
            taken = [(self._check(self._rows[i]), self._slots[i]) for i in flat]
        asked = time.monotonic()  # before any new stamp: the deadline is never late
        decisions = dict(zip(flat, self._caps.readmit(taken), strict=True)) if taken else {}
        answers: list[bool] = []
        giving_back: list[int] = []
        with self._lock:
            for ids, gone in zip(held, spent, strict=True):
                if gone:
                    answers.append(False)
                    giving_back += ids
                    continue
                allowed = all(decisions[i].allowed for i in ids)
                answers.append(allowed)
                for i in ids:
                    self._renewals[i] += 1
                    if allowed:
                        self._slots[i] = decisions[i]
                        self._deadlines[i] = asked + self._margin
                    elif decisions[i].allowed:
                        self._slots[i] = decisions[i]  # taken just now: it goes back below
                        giving_back.append(i)
                    else:
                        self._slots.pop(i, None)  # the old slot is gone already
        self.give_back(giving_back)
        refused = answers.count(False)
        if refused:
            log.info("%d request(s) held up past their deadline: numbers taken", refused)
        return answers

    def may_write(self, requests: Sequence[Sequence[int]]) -> MayWrite:
        """The transport's question for ``requests`` (the ids each carries, by position):
        a request in time may leave; one past its deadline is renewed first."""

        def ask(positions: Sequence[int]) -> list[bool]:
            now = time.monotonic()
            with self._lock:
                late = [
                    p
                    for p in positions
                    if any(self._deadlines.get(i, now) <= now for i in requests[p])
                ]
            if not late:
                return [True] * len(positions)
            renewed = dict(zip(late, self.renew([requests[p] for p in late]), strict=True))
            return [renewed.get(p, True) for p in positions]

        return ask

    def give_back(self, ids: Collection[int]) -> None:
        """Return the slots of ``ids`` (their requests never left), in one pipelined call."""
        with self._lock:
            taken = [(i, self._slots.pop(i)) for i in ids if i in self._slots]
        if not taken:
            return
        checks = [(self._check(self._rows[i]), decision) for i, decision in taken]
        found = self._caps.refund_many(checks)
        log.debug("%d cap slot(s) given back (not sent by this task)", sum(found))
