"""A circuit breaker per provider account, shared by every worker through Redis.

An ``account`` outcome (balance exhausted, frozen, IP not allowed, bad credentials)
means nothing will pass until a human acts, so the provider is paused for everyone:
its notifications wait (or fail over to the next provider of their route) instead of
each burning an attempt. After the cool-down one probe goes through (half-open); if
it is accepted the circuit closes, if not it opens again for twice as long (capped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

from redis import Redis

from scheduler import scripts

log = logging.getLogger(__name__)

MAX_COOLDOWN = 3600.0


@dataclass(frozen=True)
class CircuitState:
    #: may this dispatch send at all?
    allowed: bool
    #: when refused: when to look again
    retry_at: float | None = None
    #: allowed as the single half-open probe: send ONE notification only
    probe: bool = False
    reason: str | None = None


class CircuitBreaker:
    def __init__(self, client: Redis, *, cooldown: float = 60.0) -> None:
        self.client = client
        self.cooldown = cooldown
        self._open = scripts.load(client, "circuit_open")

    @staticmethod
    def _key(provider: str) -> str:
        return f"nq:circuit:{provider}"

    def state(self, provider: str, now: float) -> CircuitState:
        data = cast(dict[bytes, bytes], self.client.hgetall(self._key(provider)))
        if not data:
            return CircuitState(True)
        until = float(data[b"until"])
        reason = data.get(b"reason", b"").decode()
        if now < until:
            return CircuitState(False, retry_at=until, reason=reason)
        # half-open: the first to take the probe token sends one; the rest wait a little
        if self.client.set(
            f"{self._key(provider)}:probe", "1", nx=True, ex=max(5, int(self.cooldown))
        ):
            return CircuitState(True, probe=True, reason=reason)
        return CircuitState(False, retry_at=now + min(5.0, self.cooldown), reason=reason)

    def open(self, provider: str, reason: str, now: float) -> float:
        """Open (or re-open after a failed probe) the circuit; returns when it half-opens.

        A burst of account errors from one outage — every call in flight at that moment —
        opens it once (``circuit_open.lua`` decides atomically); only a failed probe, after
        the cool-down, opens it again for twice as long."""
        key = self._key(provider)
        until, cooldown = (
            float(x)
            for x in self._open(
                keys=[key, f"{key}:probe"], args=[now, self.cooldown, MAX_COOLDOWN, reason[:200]]
            )
        )
        if cooldown:
            log.error(
                "circuit OPEN for %s: %s — its notifications wait %.0fs or fail over: fix it",
                provider,
                reason,
                cooldown,
            )
        return until

    def close(self, provider: str) -> None:
        if self.client.delete(self._key(provider), f"{self._key(provider)}:probe"):
            log.warning("circuit closed for %s: the probe went through", provider)

    def is_open(self, provider: str) -> bool:
        return bool(self.client.exists(self._key(provider)))
