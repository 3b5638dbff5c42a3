"""Delivery receipts (callbacks, pushes, report pulls): stored first, matched second.

A receipt is stored whether or not its notification is known yet — the provider may
push it before our worker has committed ``sent`` (the call is fast, our commit is not),
or the report may belong to a notification sent by an earlier deployment. Matching
runs right after storing, after every ``sent`` is recorded, and in the sweeper, so a
receipt that raced its notification is applied on the next pass. The unique key
(provider, provider_ref) makes a repeated push a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.store.db import Database
from worker.store.notifications import Applied, Change, NotificationStore
from worker.store.schema import Notification, Receipt, ReportPull
from worker.store.status import Status

R = Receipt.__table__
N = Notification.__table__
P = ReportPull.__table__
#: references per ``IN (…)`` look-up (under SQLite's oldest limit of 999 parameters)
IN_CHUNK = 900


class Match(NamedTuple):
    """An unapplied receipt and a ``sent`` notification it names."""

    rid: int
    nid: int
    delivered: bool
    code: str | None
    message: str | None


@dataclass(frozen=True)
class NewReceipt:
    provider: str
    provider_ref: str
    delivered: bool
    code: str | None
    message: str | None = None
    detail: dict[str, Any] | None = None


class ReceiptStore:
    def __init__(self, db: Database, notifications: NotificationStore) -> None:
        self.db = db
        self.notifications = notifications

    def record(self, receipts: Sequence[NewReceipt], *, now: float | None = None) -> list[Applied]:
        """Store receipts (a repeat is ignored) and apply those whose notification is sent."""
        now = time.time() if now is None else now
        with self.db.write() as conn:
            self.insert(conn, receipts, now)
            return self.apply(conn, [(r.provider, r.provider_ref) for r in receipts], now)

    def insert(self, conn: Connection, receipts: Sequence[NewReceipt], now: float) -> None:
        if not receipts:
            return
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(R).on_conflict_do_nothing(index_elements=["provider", "provider_ref"])
        conn.execute(
            stmt,
            [
                {
                    "provider": r.provider,
                    "provider_ref": r.provider_ref,
                    "delivered": r.delivered,
                    "code": r.code,
                    "message": (r.message or "")[:255] or None,
                    "detail": r.detail,
                    "received_at": now,
                }
                for r in receipts
            ],
        )

    def apply(
        self,
        conn: Connection,
        refs: Sequence[tuple[str, str]] | None,
        now: float,
        limit: int = 5000,
    ) -> list[Applied]:
        """Move ``sent`` rows to their receipt's final status; ``refs=None`` means any pending."""
        if refs is None:
            query = (
                select(
                    R.c.id.label("rid"), N.c.id.label("nid"), R.c.delivered, R.c.code, R.c.message
                )
                .join(N, (N.c.provider_ref == R.c.provider_ref) & (N.c.provider == R.c.provider))
                .where(R.c.applied_at.is_(None), N.c.status == Status.SENT.value)
                .limit(limit)
            )
            return self._apply_rows(conn, list(conn.execute(query)), now)
        by_provider: dict[str, list[str]] = {}
        for provider, ref in refs:
            by_provider.setdefault(provider, []).append(ref)
        applied: list[Applied] = []
        for provider, provider_refs in by_provider.items():
            for start in range(0, len(provider_refs), IN_CHUNK):
                chunk = provider_refs[start : start + IN_CHUNK]
                applied += self._apply_rows(conn, self._matches(conn, provider, chunk), now)
        return applied

    def _matches(self, conn: Connection, provider: str, refs: Sequence[str]) -> list[Match]:
        """The unapplied receipts among ``refs`` with the ``sent`` notifications they name.

        Two look-ups, each table by its own (provider, provider_ref) index, joined here.
        As one SQL join (with ``status = 'sent'``), SQLite — which keeps no statistics —
        drives it from the status index and reads every ``sent`` notification for each
        chunk of references: 8 ms a chunk with 30,000 sent, the report pull's largest
        cost (``bench/reports.py``). For the same reason the status is checked here, not
        in SQL; the transition checks it again under the write lock in any case.
        """
        receipts = conn.execute(
            select(R.c.id, R.c.provider_ref, R.c.delivered, R.c.code, R.c.message).where(
                R.c.provider == provider, R.c.provider_ref.in_(refs), R.c.applied_at.is_(None)
            )
        ).all()
        if not receipts:
            return []
        sent: dict[str, list[int]] = {}
        rows = conn.execute(
            select(N.c.id, N.c.provider_ref, N.c.status).where(
                N.c.provider == provider, N.c.provider_ref.in_([r.provider_ref for r in receipts])
            )
        )
        for row in rows:
            if Status(row.status) is Status.SENT:
                sent.setdefault(row.provider_ref, []).append(row.id)
        return [
            Match(r.id, nid, r.delivered, r.code, r.message)
            for r in receipts
            for nid in sent.get(r.provider_ref, ())
        ]

    def _apply_rows(self, conn: Connection, rows: Sequence[Any], now: float) -> list[Applied]:
        if not rows:
            return []
        changes = [
            Change(
                id=row.nid,
                to=Status.DELIVERED if row.delivered else Status.UNDELIVERED,
                reason=None if row.delivered else f"receipt:{row.code}",
                detail={"code": row.code, "message": row.message},
            )
            for row in rows
        ]
        applied = self.notifications.transition(changes, now=now, conn=conn)
        conn.execute(
            update(R)
            .where(R.c.id == bindparam("b_rid"))
            .values(applied_at=now, notification_id=bindparam("b_nid")),
            [{"b_rid": row.rid, "b_nid": row.nid} for row in rows],
        )
        return applied

    def pending(self) -> int:
        from sqlalchemy import func

        with self.db.read() as conn:
            return conn.execute(select(func.count()).where(R.c.applied_at.is_(None))).scalar_one()

    # -- the pull-and-delete journal ---------------------------------------------------

    def journal(self, provider: str, body: str, *, now: float | None = None) -> int:
        """Commit a pulled body before anything parses it; returns its journal id."""
        now = time.time() if now is None else now
        with self.db.write() as conn:
            return conn.execute(
                P.insert().values(provider=provider, pulled_at=now, body=body).returning(P.c.id)
            ).scalar_one()

    def mark_journal(
        self, conn: Connection, pull_id: int, *, reports: int | None, error: str | None, now: float
    ) -> None:
        conn.execute(
            update(P).where(P.c.id == pull_id).values(reports=reports, error=error, parsed_at=now)
        )

    def unparsed_journal(self, provider: str) -> list[Any]:
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(P.c.id, P.c.body)
                    .where(P.c.provider == provider, P.c.parsed_at.is_(None))
                    .order_by(P.c.id)
                )
            )
