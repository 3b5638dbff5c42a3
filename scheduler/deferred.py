"""The durable "not before" set: notifications waiting for a cap, a window or a backoff.

A Redis sorted set (score = the moment it may go) is the fast index; the row's
``next_attempt_at`` in the ledger is the truth. The pump (on beat, every second) takes
what is due with one atomic script, so two pumps never release one notification twice,
and hands the ids to whatever publishes dispatch tasks. If the set is lost (a Redis
restart without AOF, a flush), the sweeper finds the rows by ``next_attempt_at`` and
re-drives them; nothing here is the only copy of anything.

No Celery countdown carries these waits: a Redis broker redelivers an ETA message held
longer than its visibility timeout, which would duplicate a phone call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import cast

from redis import Redis

from scheduler import scripts
from scheduler.clock import Clock

KEY = "nq:deferred"


class DeferredSet:
    def __init__(self, client: Redis, key: str = KEY, *, clock: Clock | None = None) -> None:
        self.client = client
        self.key = key
        #: "due" is on this clock: with clock control on, the script adds its offset
        self._clock_keys = clock.keys if clock is not None else []
        self._release = scripts.load(client, "release")

    def add(self, items: Iterable[tuple[int, float]]) -> None:
        mapping = {str(notification_id): when for notification_id, when in items}
        if mapping:
            self.client.zadd(self.key, mapping)

    def remove(self, ids: Iterable[int]) -> None:
        members = [str(i) for i in ids]
        if members:
            self.client.zrem(self.key, *members)

    def pop_due(self, limit: int) -> list[int]:
        due = self._release(keys=[self.key, *self._clock_keys], args=[limit])
        return [int(member) for member in due]

    def __len__(self) -> int:
        return cast(int, self.client.zcard(self.key))

    def when(self, notification_id: int) -> float | None:
        score = cast(float | None, self.client.zscore(self.key, str(notification_id)))
        return None if score is None else float(score)


def pump(
    deferred: DeferredSet, publish: Callable[[Sequence[int]], None], *, batch: int, most: int
) -> int:
    """Release due notifications in batches until none is due or ``most`` went out."""
    released = 0
    while released < most:
        due = deferred.pop_due(min(batch, most - released))
        if not due:
            break
        try:
            publish(due)
        except Exception:
            # handed to nobody: put them back as due now, and let the caller see why
            deferred.add((member, 0.0) for member in due)
            raise
        released += len(due)
        if len(due) < batch:
            break
    return released
