"""Claims: the first copy of a dispatch to reach a notification's current version wins it.

Celery over Redis delivers at least once, and two copies of one message can run in two
threads at the same moment, both reading the row as ``queued``. The store's
compare-and-set lets only one of them mark it ``sending`` — that is the guarantee, and
it holds without this module. What it does not stop is the loser acting *before* it
loses: taking a cap slot or a rate token, or deciding "wait" and writing ``deferred``
while the winner is still on its way to ``sending``, which pushes the real send back.

So before admission each copy claims ``(id, version)`` with one ``SET NX``: one copy
per version of a row gets past, the others stop there having touched nothing. Every
status change bumps the version, so the next legitimate dispatch (after a deferral, a
retry, a resume) claims a new key. A claim outlives its use by at most ``ttl``: should
the winner die between claim and write, a re-drive waits that long — never longer,
and never a double call, since the store still decides. A Redis that lost its claims
(a restart) only weakens this back to the store's guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis

#: long enough to cover claim → admission → the ``sending`` write under heavy load
CLAIM_TTL_MS = 30_000


def claim_key(notification_id: int, version: int) -> str:
    return f"nq:claim:{{{notification_id}}}:{version}"


class Claims:
    def __init__(self, client: Redis, *, ttl_ms: int = CLAIM_TTL_MS) -> None:
        self.client = client
        self.ttl_ms = ttl_ms

    def take(self, items: Sequence[tuple[int, int]]) -> set[int]:
        """Claim each ``(id, version)``; returns the ids this caller won (one round trip)."""
        if not items:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for notification_id, version in items:
            pipe.set(claim_key(notification_id, version), 1, nx=True, px=self.ttl_ms)
        won = pipe.execute()
        return {nid for (nid, _), ok in zip(items, won, strict=True) if ok}
