"""The calls the ledger recorded for a number: the caps' floor when Redis may have
forgotten some (scheduler/caps_floor.py says when and why).

A call is an episode in ``sending``: it starts with the event that marks the row
``sending`` (committed before the request leaves; its detail keeps the attempt's cap
stamp) and ends at the row's next event (the answer recorded, or the request never
sent), which is no earlier than the request left. A row still ``sending`` is a call
still going. One query a batch, on the index of ``notifications.to`` and that of
``events.notification_id``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select

from scheduler.caps_floor import ADMITTED, PastCall
from store.bulk import IN_LIST_LIMIT, among
from store.db import Store
from store.schema import Event, Notification, table_of
from store.status import Status

N = table_of(Notification)
E = table_of(Event)


class CallHistory(Store):
    def recent(
        self, numbers: Sequence[tuple[str, str]], since: float
    ) -> dict[tuple[str, str], list[PastCall]]:
        """For (provider, E.164 number) pairs, the calls that started at ``since`` or
        later, oldest first; a pair without any is absent."""
        wanted = set(numbers)
        found: dict[tuple[str, str], list[PastCall]] = defaultdict(list)
        if not wanted:
            return {}
        distinct = sorted({number for _, number in wanted})
        with self.db.read() as conn:
            for start in range(0, len(distinct), IN_LIST_LIMIT):
                chunk = distinct[start : start + IN_LIST_LIMIT]
                rows = conn.execute(
                    select(
                        N.c.provider,
                        N.c.to,
                        E.c.notification_id,
                        E.c.at,
                        E.c.to_status,
                        E.c.detail,
                    )
                    .join(N, N.c.id == E.c.notification_id)
                    .where(among(conn, N.c.to, chunk), E.c.at >= since)
                    .order_by(E.c.notification_id, E.c.at, E.c.id)
                ).all()
                for i, row in enumerate(rows):
                    pair = (row.provider, row.to)
                    if pair not in wanted or Status(row.to_status) is not Status.SENDING:
                        continue
                    after = rows[i + 1] if i + 1 < len(rows) else None
                    ended = (
                        after.at
                        if after is not None and after.notification_id == row.notification_id
                        else None
                    )
                    stamp = (row.detail or {}).get(ADMITTED)
                    started = row.at if stamp is None else stamp / 1000
                    found[pair].append(PastCall(started, ended))
        for calls in found.values():
            calls.sort(key=lambda call: call.started)
        return dict(found)
