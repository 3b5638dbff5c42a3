"""Per-number caps: a strategy (``caps.lua``) over a store (one Redis key per number).

Every cap of a provider is checked and the attempt recorded in ONE script call, on
Redis's clock, so any number of workers agree and no two can both take the last slot.
Windows slide (a log of the last attempts, not fixed buckets): "3/minute" means at most
3 in any 60 s, and a refusal says exactly when the tightest cap frees.

Memory: the log is packed — 6 bytes a time — into one string per number with a TTL of
the longest window, so a number costs a key and a few dozen bytes while it is active
and nothing once it is not (``bench/caps.py`` measures it).

Key layout: ``nq:cap:<provider>:{<digits>}``; the hash tag keeps the key on one slot
per number should the caps move to a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from scheduler import scripts
from scheduler.limits import Cap

PROVIDER_BLOCK = "provider-block"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: epoch seconds, Redis's clock, when this decision was made
    now: float
    #: epoch seconds when the refusing cap frees (None when allowed)
    retry_at: float | None = None
    #: the refusing cap ("3/minute"), or "provider-block" after the provider refused
    cap: str | None = None


@dataclass(frozen=True)
class CapCheck:
    provider: str
    number: str
    caps: Sequence[Cap]


def cap_key(provider: str, number: str) -> str:
    return f"nq:cap:{provider}:{{{number.lstrip('+')}}}"


class CapLimiter:
    """Admits attempts against per-number caps; thread-safe (redis-py pools connections)."""

    def __init__(self, client: Redis, *, margin: float = 0.5) -> None:
        self.client = client
        self.margin_ms = round(margin * 1000)
        self._hit = scripts.load(client, "caps")
        self._block = scripts.load(client, "caps_block")

    def _args(self, caps: Sequence[Cap]) -> list[int]:
        args = [self.margin_ms]
        for cap in caps:
            args += [cap.window * 1000, cap.amount]
        return args

    def hit(self, provider: str, number: str, caps: Sequence[Cap]) -> Decision:
        """Check every cap and record the attempt only if all pass."""
        if not caps:
            return Decision(True, now=0.0)
        reply = self._hit(keys=[cap_key(provider, number)], args=self._args(caps))
        return _decision(reply, caps)

    def hit_many(self, checks: Sequence[CapCheck]) -> list[Decision]:
        """Many numbers in one round trip; each number's check is still its own atomic call."""
        if not checks:
            return []
        pipe = self.client.pipeline(transaction=False)
        for check in checks:
            if check.caps:
                self._hit(
                    keys=[cap_key(check.provider, check.number)],
                    args=self._args(check.caps),
                    client=pipe,
                )
        replies = iter(pipe.execute())
        return [
            _decision(next(replies), check.caps) if check.caps else Decision(True, now=0.0)
            for check in checks
        ]

    def block(self, provider: str, number: str, seconds: float) -> float:
        """The provider refused this number for a cap: try nothing before now + seconds."""
        until = self._block(keys=[cap_key(provider, number)], args=[max(1, round(seconds * 1000))])
        return int(until) / 1000


def _decision(reply: Sequence[int], caps: Sequence[Cap]) -> Decision:
    allowed, now_ms, retry_ms, index = (int(x) for x in reply)
    if allowed:
        return Decision(True, now=now_ms / 1000)
    cap = PROVIDER_BLOCK if index == 0 else caps[index - 1].text
    return Decision(False, now=now_ms / 1000, retry_at=retry_ms / 1000, cap=cap)
