"""The store's record of recent calls as the caps' floor, for when Redis may have forgotten.

Why it exists. Redis replicates asynchronously: a replica promoted after its master died
lacks whatever the master wrote since the last bytes it received, and a Redis restarted
from an AOF synced every second lacks up to that second. A number's caps log on such a
Redis looks younger than the number's real history, and a daily cap would let a fourth
call through (one the provider refuses, extending its own block by a day). The ledger
forgets nothing: every call is committed ``sending`` before its request leaves.

How. ``caps.lua`` keeps a *lineage mark* beside the logs: the Redis's replication id and
the moment the caps first ran under it. A promotion or a restart changes the id, so
the next caps call on that Redis starts a new lineage. For the longest window after a
lineage began, the log alone may be short, so the script answers "in doubt" and the
limiter asks the store for the number's calls (:class:`CapFloor`) and asks again with
them. The script then counts the store's calls *started before the lineage began*
together with the log's attempts *since*: the first are every call the old history
held, the second every attempt made on this Redis since, and no call is in both. A
call still in flight counts as made now. Past that window the log is whole again and
the store is not asked.

What it costs: while no lineage is in doubt, one ``INFO replication`` and one ``GET``
inside each caps call (a few microseconds of Redis); while in doubt, one query of the
store a batch. A Redis Cluster has no single place for the
mark, so caps on a cluster trust their logs (scheduler/connect.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler.caps import Decision

#: the lineage mark's key (one a Redis database)
LINEAGE_KEY = "nq:caps:lineage"


#: the key of a ``sending`` event's detail that holds the attempt's cap stamp (ms)
ADMITTED = "cap_at"


def admitted_detail(decision: Decision | None) -> dict[str, int] | None:
    """What the ``sending`` event keeps of the caps' decision: the stamp the attempt was
    recorded at, on the caps' Redis clock, so the floor tells the attempts of an old
    lineage from those of the new one exactly (the event's own time is the batch's,
    taken before the caps were asked)."""
    stamp = None if decision is None else decision.stamp_ms
    return None if stamp is None else {ADMITTED: stamp}


@dataclass(frozen=True)
class PastCall:
    """One call the store recorded for a number."""

    #: epoch s of its attempt's cap stamp (for a call recorded without one: when the row
    #: was marked ``sending``, a moment before it was admitted)
    started: float
    #: epoch s of the row's next change (no earlier than the request left), or None
    #: while the call is still going
    ended: float | None


#: (provider, E.164 number) pairs and a moment → each pair's calls started since then
RecentCalls = Callable[
    [Sequence[tuple[str, str]], float], Mapping[tuple[str, str], Sequence[PastCall]]
]


@dataclass(frozen=True)
class CapFloor:
    """Where the caps find a number's calls when their log may be short."""

    #: the providers whose calls the store records (others' logs are trusted as they are)
    providers: frozenset[str]
    recent: RecentCalls

    def covers(self, provider: str) -> bool:
        return provider in self.providers


def floor_args(calls: Sequence[PastCall]) -> list[int]:
    """``caps.lua``'s floor arguments: the count, then (started, ended) in ms, rounded
    toward counting more (started down, ended up; 0 while still calling)."""
    args = [len(calls)]
    for call in sorted(calls, key=lambda c: c.started):
        ended = 0 if call.ended is None else math.ceil(call.ended * 1000)
        args += [math.floor(call.started * 1000), ended]
    return args
