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
from typing import Any

from sqlalchemy import Connection, Select, select, true

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
                rows = conn.execute(_calls(conn, chunk, since)).all()
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


def _calls(conn: Connection, numbers: Sequence[str], since: float) -> Select[Any]:
    """The events since ``since`` of the rows sent to ``numbers``, by row and time.

    On PostgreSQL the events are read per row (a ``LATERAL`` subquery, kept apart by
    ``OFFSET 0``), so each is an index probe of ``events.notification_id`` whatever
    the planner believes: before autovacuum first analyzes a young store (its first
    minute, or a busy minute after a big import) the plain join was planned as a hash
    join over every partition's whole table, read again for each batch, and that read
    grew with the table (3.7 million event rows read for 6,000 sends in
    ``bench/api.py --e2e-only``)."""
    if conn.dialect.name != "postgresql":
        return (
            select(N.c.provider, N.c.to, E.c.notification_id, E.c.at, E.c.to_status, E.c.detail)
            .join(N, N.c.id == E.c.notification_id)
            .where(among(conn, N.c.to, numbers), E.c.at >= since)
            .order_by(E.c.notification_id, E.c.at, E.c.id)
        )
    rows = select(N.c.id, N.c.provider, N.c.to).where(among(conn, N.c.to, numbers)).subquery("n")
    events = (
        select(E.c.id, E.c.notification_id, E.c.at, E.c.to_status, E.c.detail)
        .where(E.c.notification_id == rows.c.id, E.c.at >= since)
        .offset(0)
        .lateral("e")
    )
    return (
        select(rows.c.provider, rows.c.to, events.c.notification_id, events.c.at)
        .add_columns(events.c.to_status, events.c.detail)
        .select_from(rows.join(events, true()))
        .order_by(events.c.notification_id, events.c.at, events.c.id)
    )
