"""A daily quota per name (``quota.lua``): at most N units from one midnight to the next
in the configured time zone, on Redis's clock, all or none per take.

Why not the caps script: caps.lua keeps a sliding log with one entry per attempt and
reads the whole log on every call, so its cost grows with the amount — 0.2 ms a call
for 10 a day, 1.5 ms for 10,000 a day on this machine (``bench/keys.py``), and a
quota of a million notifications a day would hold Redis for most of a second per call.
A quota also takes many units at once (a batch of a thousand notifications is one
request), which the log would record one attempt at a time. A count and the day it
counts is O(1) whatever the quota, and a day that resets at midnight is what people
mean by "a daily quota".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from redis import Redis

from scheduler import scripts


@dataclass(frozen=True)
class QuotaDecision:
    allowed: bool
    #: units taken today, this take included when allowed
    used: int
    #: the day counted (days since the epoch, local): what :meth:`DailyQuota.give_back` takes
    day: int
    #: epoch seconds of the next midnight, when the count starts again
    resets_at: float


def quota_key(namespace: str, name: str) -> str:
    return f"nq:quota:{namespace}:{{{name}}}"


class DailyQuota:
    def __init__(self, client: Redis, zone: ZoneInfo) -> None:
        self.zone = zone
        self._script = scripts.load(client, "quota")

    def take(self, namespace: str, name: str, quota: int, units: int = 1) -> QuotaDecision:
        """``units`` of ``name``'s ``quota`` for today, all or none."""
        return self._call(namespace, name, quota, units, "")

    def give_back(
        self, namespace: str, name: str, quota: int, taken: QuotaDecision, units: int
    ) -> None:
        """Return ``units`` of what ``taken`` took (unused: refused later, or stored
        once already), unless the day has turned since."""
        if units > 0 and taken.allowed:
            self._call(namespace, name, quota, -units, str(taken.day))

    def _call(self, namespace: str, name: str, quota: int, units: int, day: str) -> QuotaDecision:
        offset = datetime.now(self.zone).utcoffset()
        offset_ms = round(offset.total_seconds() * 1000) if offset is not None else 0
        allowed, used, counted, midnight = self._script(
            keys=[quota_key(namespace, name)], args=[quota, units, offset_ms, day]
        )
        return QuotaDecision(bool(allowed), int(used), int(counted), int(midnight) / 1000)
