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
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from worker.store.db import Database
from worker.store.notifications import Applied, Change, NotificationStore
from worker.store.schema import Notification, Receipt, ReportPull
from worker.store.status import Status

R = Receipt.__table__
N = Notification.__table__
P = ReportPull.__table__


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
        query = (
            select(R.c.id.label("rid"), N.c.id.label("nid"), R.c.delivered, R.c.code, R.c.message)
            .join(N, (N.c.provider_ref == R.c.provider_ref) & (N.c.provider == R.c.provider))
            .where(R.c.applied_at.is_(None), N.c.status == Status.SENT.value)
        )
        if refs is not None:
            if not refs:
                return []
            by_provider: dict[str, list[str]] = {}
            for provider, ref in refs:
                by_provider.setdefault(provider, []).append(ref)
            applied: list[Applied] = []
            for provider, provider_refs in by_provider.items():
                for start in range(0, len(provider_refs), 900):
                    chunk = provider_refs[start : start + 900]
                    rows = list(
                        conn.execute(
                            query.where(R.c.provider == provider, R.c.provider_ref.in_(chunk))
                        )
                    )
                    applied += self._apply_rows(conn, rows, now)
            return applied
        rows = list(conn.execute(query.limit(limit)))
        return self._apply_rows(conn, rows, now)

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
