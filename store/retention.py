"""What the ledger forgets: every finished notification older than the retention, with
its events and receipts, and the other records that hold a number past it.

Deleted, not erased: an erased row still costs its row, its events and their indexes
(docs/capacity.md counts ~26 GB a day at a million notifications an hour), so only
deleting keeps the store's size bounded by the retention. What goes:

- a notification that ended (``delivered``, ``undelivered``, ``failed``, ``cancelled``,
  ``unknown``) and has not changed since the cutoff, with its events and its receipts;
- receipts that never matched a notification, report pulls (their raw bodies hold
  numbers) and verifications (their numbers), received, pulled or expired before it.

Suppressions stay (a number that must not be called must stay not called), and so does
a notification still on its way, however old. In bounded batches, each its own short
transaction, so no writer waits long behind one: a batch reads the next page of
notifications by id (the primary key; ids grow with creation), deletes those of them
that qualify, and the run stops where rows are newer than the cutoff. On PostgreSQL
the events are partitioned by day and a whole partition older than the cutoff is
dropped (store/partitions.py) instead of deleted row by row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, delete, func, select, update

from store import partitions
from store.bulk import among
from store.db import Database
from store.schema import Event, Notification, Receipt, ReportPull, Verification, table_of
from store.status import FINAL

N = table_of(Notification)
E = table_of(Event)
R = table_of(Receipt)
P = table_of(ReportPull)
V = table_of(Verification)
ENDED = sorted(status.value for status in FINAL)
DAY = 86400.0


@dataclass
class Pruned:
    """What a prune deleted (or, dry, would delete)."""

    notifications: int = 0
    events: int = 0
    receipts: int = 0
    report_pulls: int = 0
    verifications: int = 0
    #: PostgreSQL's event partitions dropped whole, and the events they held (estimated
    #: by the planner's statistics in a dry run)
    partitions: list[str] = field(default_factory=list)
    partition_events: int = 0
    #: False when the run stopped at its bound with more left for the next one
    complete: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retention:
    """Deletes what is older than a cutoff, ``batch`` rows a transaction, at most
    ``most`` notifications a run (the rest waits for the next run)."""

    def __init__(self, db: Database, *, batch: int = 1000, most: int = 100_000) -> None:
        self.db = db
        self.batch = batch
        self.most = most

    def prune(self, now: float, days: float) -> Pruned:
        """Delete what ended ``days`` before ``now`` (epoch s, the clock the rows were
        written on); on PostgreSQL, first make sure the coming days have partitions."""
        cutoff = now - days * DAY
        out = Pruned()
        if not self.db.is_sqlite:
            partitions.ensure_ahead(self.db, now)
            out.partitions, out.partition_events = partitions.drop_older(self.db, cutoff)
        out.complete = self._notifications(cutoff, out)
        out.receipts += self._older(R, R.c.received_at, cutoff, R.c.notification_id.is_(None))
        out.report_pulls = self._older(P, P.c.pulled_at, cutoff)
        out.verifications = self._older(V, V.c.expires_at, cutoff)
        return out

    def count(self, now: float, days: float) -> Pruned:
        """What :meth:`prune` would delete, counted (nothing changes)."""
        cutoff = now - days * DAY
        out = Pruned()
        with self.db.read() as conn:
            ended = _ended_before(cutoff)
            out.notifications = conn.execute(select(func.count()).where(ended)).scalar_one()
            old = select(N.c.id).where(ended)
            out.events = conn.execute(
                select(func.count()).select_from(E).where(E.c.notification_id.in_(old))
            ).scalar_one()
            out.receipts = conn.execute(
                select(func.count())
                .select_from(R)
                .where(
                    R.c.notification_id.in_(old)
                    | (R.c.notification_id.is_(None) & (R.c.received_at < cutoff))
                )
            ).scalar_one()
            out.report_pulls = _count(conn, P, P.c.pulled_at < cutoff)
            out.verifications = _count(conn, V, V.c.expires_at < cutoff)
            if not self.db.is_sqlite:
                out.partitions, out.partition_events = partitions.older(conn, cutoff)
        return out

    def _notifications(self, cutoff: float, out: Pruned) -> bool:
        """Page through notifications by id until they are newer than the cutoff; False
        if the run's bound stopped it first."""
        after = 0
        for _ in range(max(1, self.most // self.batch)):
            with self.db.write() as conn:
                page = conn.execute(
                    select(N.c.id, N.c.created_at)
                    .where(N.c.id > after)
                    .order_by(N.c.id)
                    .limit(self.batch)
                ).all()
                if not page:
                    return True
                after = page[-1].id
                self._delete_page(conn, [row.id for row in page], cutoff, out)
            if page[-1].created_at >= cutoff:
                return True
        return False

    def _delete_page(self, conn: Connection, page: list[int], cutoff: float, out: Pruned) -> None:
        """Of ``page``, the notifications that ended before the cutoff: locked (on
        PostgreSQL a row a receipt is moving is skipped, not waited for), then their
        events, receipts and links from verifications, then the rows."""
        chosen = select(N.c.id).where(among(conn, N.c.id, page), _ended_before(cutoff))
        if not self.db.is_sqlite:
            chosen = chosen.with_for_update(skip_locked=True)
        ids: list[int] = list(conn.execute(chosen).scalars())
        if not ids:
            return
        out.events += conn.execute(delete(E).where(among(conn, E.c.notification_id, ids))).rowcount
        out.receipts += conn.execute(
            delete(R).where(among(conn, R.c.notification_id, ids))
        ).rowcount
        for column in (V.c.notification_id, V.c.fallback_id):
            conn.execute(update(V).where(among(conn, column, ids)).values({column.name: None}))
        out.notifications += conn.execute(delete(N).where(among(conn, N.c.id, ids))).rowcount

    def _older(self, table: Table, moment: Any, cutoff: float, *more: Any) -> int:
        """Delete rows of ``table`` whose ``moment`` is before the cutoff, a batch a
        transaction (by primary key, so each delete is one indexed page)."""
        deleted = 0
        while True:
            with self.db.write() as conn:
                ids: list[int] = list(
                    conn.execute(
                        select(table.c.id).where(moment < cutoff, *more).limit(self.batch)
                    ).scalars()
                )
                if ids:
                    deleted += conn.execute(
                        delete(table).where(among(conn, table.c.id, ids))
                    ).rowcount
            if len(ids) < self.batch:
                return deleted


def _ended_before(cutoff: float) -> Any:
    return N.c.status.in_(ENDED) & (N.c.updated_at < cutoff)


def _count(conn: Connection, table: Table, where: Any) -> int:
    return conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
