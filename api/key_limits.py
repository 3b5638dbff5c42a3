"""Per-key limits, so one runaway service cannot starve the others: a request rate and a
daily quota of notifications, each answered ``429`` with ``Retry-After`` beyond it.

- **Rate** (``keys create --rate 100/second``): every ``/v1`` request of the key counts,
  checked by :class:`~api.auth.ApiKeyGate` before the body is read, on the throughput
  script providers' rates use (scheduler/rates.py, a GCRA on Redis's clock: a burst of
  up to the amount, then the rate), whichever API process takes the request. Not the
  per-number caps script: its sliding log is read whole on every call, so its cost grows
  with the requests inside the window — ~0.1 ms a call at 100 a second, several ms at
  thousands (``bench/keys.py``), on the Redis that holds every number's caps; the GCRA
  keeps one time per key, whatever the rate.
- **Daily quota** (``--quota 10000``): notifications stored a day (midnight to midnight in
  ``NOTIFYQ_TIMEZONE``), taken all or none before anything is stored (a batch takes
  its valid items, a campaign its recipients, a verification its one or two calls) and
  given back for what was not stored after all: an idempotent repeat, a refused item,
  a campaign's rejected rows (scheduler/quota.py says why this is not the caps script).

A key without limits costs nothing here: no Redis call. When Redis cannot be asked, the
request goes through (logged): an outage of the limiter's Redis must not become an
outage of every limited key, and what is stored still waits for the same Redis to be
sent.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from api.keyring import Grant, KeyRing
from scheduler.quota import DailyQuota, QuotaDecision
from scheduler.rates import RateLimiter
from store.keys import KeyStore
from tasks.runtime import Runtime

log = logging.getLogger(__name__)

#: the rates' and quotas' namespace for API keys
NAMESPACE = "api-key"


@dataclass(frozen=True)
class Refusal:
    """A 429: which limit, and how long until it admits again."""

    message: str
    retry_after: float

    def response(self) -> JSONResponse:
        wait = max(1, math.ceil(self.retry_after))
        return JSONResponse(
            {"errors": [{"field": "authorization", "message": self.message}]},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )


class OverQuota(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass
class Allowance:
    """Units of a key's daily quota taken for one request: :meth:`stored` says how many
    were used; :meth:`KeyLimits.settle` gives the rest back."""

    grant: Grant
    units: int
    #: the take (None: no quota, or Redis could not be asked)
    taken: QuotaDecision | None = None
    used: int = 0

    def stored(self, units: int) -> None:
        self.used = max(0, min(units, self.units))

    @property
    def unused(self) -> int:
        return self.units - self.used if self.taken is not None else 0


class KeyLimits:
    """The limits' Redis calls are blocking; the async routes and the gate run them on
    a thread (:meth:`notifications_off_loop`), so a round trip never holds the event
    loop that serves every other request (``bench/keys.py``: a quarter of the API's
    throughput when it did)."""

    def __init__(self, rates: RateLimiter, quota: DailyQuota, timezone: str) -> None:
        self.rates = rates
        self.quota = quota
        self.timezone = timezone

    def admit(self, grant: Grant) -> Refusal | None:
        """Count one request against the key's rate; a refusal if it is over."""
        if not grant.rate:
            return None
        try:
            decision = self.rates.take(f"{NAMESPACE}:{grant.name}", grant.rate)
        except RedisError as exc:
            log.warning("the rate of key %s went unchecked (%s)", grant.name, type(exc).__name__)
            return None
        if decision.allowed:
            return None
        assert decision.retry_at is not None
        rate = ";".join(cap.text for cap in grant.rate)
        return Refusal(
            f"this API key may make at most {rate} requests", decision.retry_at - decision.now
        )

    def take(self, grant: Grant, units: int) -> Allowance:
        """``units`` notifications of the key's daily quota, all or none: raises
        :class:`OverQuota` if they do not fit."""
        allowance = Allowance(grant, units)
        quota = grant.daily_quota
        if quota is None or units <= 0:
            return allowance
        try:
            allowance.taken = self.quota.take(NAMESPACE, grant.name, quota, units)
        except RedisError as exc:
            log.warning("the quota of key %s went unchecked (%s)", grant.name, type(exc).__name__)
            return allowance
        if not allowance.taken.allowed:
            raise OverQuota(
                Refusal(
                    f"this API key's daily quota of {quota} notifications is used up "
                    f"({allowance.taken.used} today); it starts again at midnight "
                    f"({self.timezone})",
                    allowance.taken.resets_at - time.time(),
                )
            )
        return allowance

    def settle(self, allowance: Allowance) -> None:
        """Give back what ``allowance`` took and the request did not store."""
        if allowance.unused <= 0:
            return
        assert allowance.taken is not None and allowance.grant.daily_quota is not None
        self._give_back(
            allowance.grant.name,
            allowance.grant.daily_quota,
            allowance.taken,
            allowance.unused,
        )

    @contextmanager
    def notifications(self, grant: Grant, units: int) -> Iterator[Allowance]:
        """:meth:`take` before the block, :meth:`settle` after it (also when it raises)."""
        allowance = self.take(grant, units)
        try:
            yield allowance
        finally:
            self.settle(allowance)

    @asynccontextmanager
    async def notifications_off_loop(self, grant: Grant, units: int) -> AsyncIterator[Allowance]:
        """:meth:`notifications` for an async route: the Redis calls on a thread."""
        if grant.daily_quota is None:
            yield Allowance(grant, units)
            return
        allowance = await run_in_threadpool(self.take, grant, units)
        try:
            yield allowance
        finally:
            if allowance.unused > 0:
                await run_in_threadpool(self.settle, allowance)

    def _give_back(self, name: str, quota: int, taken: QuotaDecision, units: int) -> None:
        try:
            self.quota.give_back(NAMESPACE, name, quota, taken, units)
        except RedisError as exc:
            log.warning(
                "key %s: %d unused units not given back (%s)", name, units, type(exc).__name__
            )


def keys_for(rt: Runtime) -> tuple[KeyRing, KeyLimits]:
    """The key ring and the per-key limits of one API process."""
    ring = KeyRing(KeyStore(rt.db), rt.redis, rt.settings.api_keys)
    limits = KeyLimits(rt.rates, DailyQuota(rt.redis, rt.settings.zone), rt.settings.timezone)
    return ring, limits
