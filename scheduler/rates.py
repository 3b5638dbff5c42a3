"""Provider-wide and campaign-wide throughput (``rate.lua``, GCRA on Redis's clock).

Checked *before* the per-number caps: a throughput slot taken by a send that a number
cap then refuses is a little lost throughput, while a number-cap slot taken by a send
that the throughput cap refuses would be a lost call for that recipient.

A take is all or none: a batch of ``quantity`` sends passes while the backlog stays
within one burst (``amount``). A batch bigger than a whole burst could never pass that
way and would wait for ever, so it goes alone once nothing is outstanding, and the
takes after it wait until it has drained at the rate (the average holds; that one
burst is the batch). Keep batches within the burst where the provider counts bursts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from scheduler import scripts
from scheduler.limits import Cap


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    now: float
    retry_at: float | None = None


class RateLimiter:
    def __init__(self, client: Redis) -> None:
        self._take = scripts.load(client, "rate")

    def take(self, key: str, rates: Sequence[Cap], quantity: int = 1) -> RateDecision:
        if not rates or quantity < 1:
            return RateDecision(True, now=0.0)
        args: list[int] = [quantity]
        for rate in rates:
            args += [rate.window * 1000, rate.amount]
        allowed, now_ms, retry_ms = (int(x) for x in self._take(keys=[f"nq:rate:{key}"], args=args))
        if allowed:
            return RateDecision(True, now=now_ms / 1000)
        return RateDecision(False, now=now_ms / 1000, retry_at=retry_ms / 1000)
