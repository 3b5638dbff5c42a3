"""One send of each periodic job per period, among any number of beats (``period_claim.lua``).

Each beat keeps its schedule in memory and, when an entry falls due, asks here before it
sends: the claim succeeds only when no beat has sent that job within the last
:data:`LEAST_GAP` of its period, on Redis's clock (so beats on hosts whose clocks
disagree still agree), and records the send in the same atomic step. Two beats that
fall due together: one sends. A beat whose turn comes a little early (Celery wakes a few
milliseconds ahead) still wins its own next period, so the job keeps the cadence of the
first beat rather than drifting between them.
"""

from __future__ import annotations

from redis import Redis

from scheduler.scripts import load

#: share of the period that must have passed since the last send
LEAST_GAP = 0.9
KEY = "nq:beat:last:{}"


class PeriodClaims:
    def __init__(self, client: Redis) -> None:
        self.script = load(client, "period_claim")

    def claim(self, job: str, period: float) -> bool:
        """Whether this beat sends ``job`` now (its period in seconds)."""
        gap_ms = max(1, int(period * LEAST_GAP * 1000))
        keep_ms = max(1000, int(period * 3 * 1000))
        return bool(self.script(keys=[KEY.format(job)], args=[gap_ms, keep_ms]))
