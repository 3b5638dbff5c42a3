"""Provider-wide and campaign-wide throughput (``rate.lua``, GCRA on Redis's clock).

Priority classes share one rate, not equally: urgent and normal sends may fill a whole
burst, bulk only its ``reach`` (``NOTIFYQ_BULK_SHARE`` of it). Bulk takes what the others
leave — the theoretical arrival time their takes push forward is the one bulk waits
for — and never the last part of a burst, so when a campaign keeps a provider's rate
saturated, that part is free the moment a code arrives: the code goes at once and the
campaign's rows are the ones deferred. The average rate stays the provider's; only the
burst bulk may build is smaller.

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

    def take(
        self, key: str, rates: Sequence[Cap], quantity: int = 1, *, reach: float = 1.0
    ) -> RateDecision:
        """Take ``quantity`` sends of the rate at ``key``, filling at most ``reach`` of a
        burst (1 for urgent and normal, the bulk share for bulk)."""
        if not rates or quantity < 1:
            return RateDecision(True, now=0.0)
        if not 0 < reach <= 1:
            raise ValueError("reach is a share of a burst: more than 0, at most 1")
        args: list[float] = [quantity, reach]
        for rate in rates:
            args += [rate.window * 1000, rate.amount]
        allowed, now_ms, retry_ms = (int(x) for x in self._take(keys=[f"nq:rate:{key}"], args=args))
        if allowed:
            return RateDecision(True, now=now_ms / 1000)
        return RateDecision(False, now=now_ms / 1000, retry_at=retry_ms / 1000)
