"""How much campaign work to keep in the broker: a few seconds of it, not a count.

A fixed number of messages ahead is minutes of work for a slow provider (or a campaign
with a rate of its own) and Redis then holds most of a campaign; a pause or a cancel
acts only on what is still in the ledger. So each fan-out (once a second, one at a time
under its lock) measures how fast the workers took bulk messages since the last one and
keeps ``NOTIFYQ_RELEASE_LEAD`` seconds of that ahead of them — never more than
``NOTIFYQ_RELEASE_HIGH_WATER`` messages, never less than :data:`FLOOR`.

The measure: the bulk queue's depth after the last release, less its depth now, over
the time between. A queue found empty was drained faster than it was filled, so the
measure is a floor of the true speed; keeping ``lead`` (> 1) seconds of it ahead grows
the release by that factor each second until the workers are the limit, then holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis import Redis

#: where the last fan-out left its measure (one hash: at, depth, rate)
PACE_KEY = "nq:release:pace"
#: messages kept ahead whatever was measured: a campaign's start, or after a lull
FLOOR = 4
#: a measure older than this (fan-outs stopped, beat restarted) starts again
STALE = 30.0
#: how much of a new measure a smoothed rate takes in (the rest is its past)
WEIGHT = 0.5


@dataclass(frozen=True)
class Pace:
    """The bulk messages the workers took a second (smoothed), and the room it leaves."""

    rate: float
    depth: int
    room: int


def measure(redis: Redis, now: float, depth: int, *, lead: float, high_water: int) -> Pace:
    """The room for bulk messages now, from the rate they were taken at since the last
    fan-out (call :func:`record` with the depth after this one's release)."""
    last = {k.decode(): float(v) for k, v in redis.hgetall(PACE_KEY).items()}
    rate = 0.0
    elapsed = now - last.get("at", 0.0)
    if last and 0 < elapsed <= STALE:
        taken = max(0.0, last["depth"] - depth) / elapsed
        rate = WEIGHT * taken + (1 - WEIGHT) * last.get("rate", 0.0)
        if depth == 0:  # drained: the workers could have taken more than they were given
            rate = max(rate, taken)
    ahead = min(high_water, max(FLOOR, math.ceil(rate * lead)))
    return Pace(rate=rate, depth=depth, room=max(0, ahead - depth))


def record(redis: Redis, now: float, pace: Pace, published: int) -> None:
    """What the next fan-out measures from: now, and the depth this one left."""
    redis.hset(PACE_KEY, mapping={"at": now, "depth": pace.depth + published, "rate": pace.rate})
    redis.expire(PACE_KEY, int(STALE * 2))
