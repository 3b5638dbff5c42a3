"""Delivery receipts (callbacks, pushes, report pulls): stored first, matched second.

A receipt is stored whether or not its notification is known yet — the provider may
push it before our worker has committed ``sent`` (the call is fast, our commit is not),
or the report may belong to a notification sent by an earlier deployment. Matching
runs right after storing, after every ``sent`` is recorded, and in the sweeper, so a
receipt that raced its notification is applied on the next pass. The unique key
(provider, provider_ref) makes a repeated push a no-op.

A receipt also repairs a notification that ended ``unknown`` (its answer was lost, or
no receipt came within the receipt timeout) but whose reference we hold: the provider
has told us after all, and the event says it was a repair.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select, update

from store.bulk import IN_LIST_LIMIT, among, insert_rows, tuples
from store.db import Database
from store.notifications import Applied, Change, Expect, NotificationStore, unindexed
from store.schema import Notification, Receipt, ReportPull, table_of
from store.status import Status

R = table_of(Receipt)
N = table_of(Notification)
P = table_of(ReportPull)
UNIQUE_REF = ("provider", "provider_ref")
RECEIPT_COLUMNS = (
    "provider",
    "provider_ref",
    "delivered",
    "code",
    "message",
    "detail",
    "received_at",
    "applied_at",
    "notification_id",
)


#: the statuses a receipt may move: ``sent``, and ``unknown`` (a repair)
AWAITING = (Status.SENT, Status.UNKNOWN)


class Open(NamedTuple):
    """A notification a receipt may still move, as read."""

    nid: int
    status: Status
    version: int


#: (the notification as read, delivered, code, message)
Move = tuple[Open, bool, str | None, str | None]


class Match(NamedTuple):
    """An unapplied receipt and a ``sent`` (or ``unknown``) notification it names."""

    rid: int
    open: Open
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
            return self.store(conn, receipts, now)

    def store(self, conn: Connection, receipts: Sequence[NewReceipt], now: float) -> list[Applied]:
        """Store new receipts and apply them, in one pass inside the caller's transaction:
        what ``record`` and the report pull do.

        Each chunk of references is looked up twice before the insert — the ``sent``
        notifications they name, and the receipts already stored. A new receipt whose
        call is ``sent`` is stored already marked applied and its notification moved,
        where storing first and matching second read every receipt back and updated it
        once more (a third of a report page's cost, ``bench/reports.py``). One stored
        before (a repeat) is applied as it was stored, if it is still pending.
        """
        first: dict[tuple[str, str], NewReceipt] = {}
        for receipt in receipts:  # one reference twice in a batch: the first is stored
            first.setdefault((receipt.provider, receipt.provider_ref), receipt)
        by_provider: dict[str, list[NewReceipt]] = {}
        for (provider, _), receipt in first.items():
            by_provider.setdefault(provider, []).append(receipt)
        applied: list[Applied] = []
        for provider, batch in by_provider.items():
            for start in range(0, len(batch), IN_LIST_LIMIT):
                applied += self._store_chunk(
                    conn, provider, batch[start : start + IN_LIST_LIMIT], now
                )
        return applied

    def _store_chunk(
        self, conn: Connection, provider: str, receipts: Sequence[NewReceipt], now: float
    ) -> list[Applied]:
        refs = [r.provider_ref for r in receipts]
        sent = self._sent(conn, provider, refs)
        stored = self._stored(conn, provider, refs)
        rows = []
        inserted = set()
        for r in receipts:
            if r.provider_ref in stored:
                continue
            row = _receipt_row(r, now)
            found = sent.get(r.provider_ref)
            if found:
                row.update(applied_at=now, notification_id=found[0].nid)
            rows.append(row)
            inserted.add(r.provider_ref)
        # A writer between our look-up and this insert (PostgreSQL; SQLite writers are
        # serialised) makes its row win and ours a no-op; the notification still moves
        # once, as every transition is a compare-and-set.
        insert_rows(conn, R, RECEIPT_COLUMNS, rows, skip_conflicts_on=UNIQUE_REF)
        applied = self._move_sent(
            conn,
            [
                (found, r.delivered, r.code, _message(r.message))
                for r in receipts
                if r.provider_ref in inserted
                for found in sent.get(r.provider_ref, ())
            ],
            now,
        )
        stored_before = [
            r.provider_ref
            for r in receipts
            if r.provider_ref not in inserted and r.provider_ref in sent
        ]
        if stored_before:
            applied += self._apply_rows(conn, self._matches(conn, provider, stored_before), now)
        return applied

    def _move_sent(self, conn: Connection, moves: Sequence[Move], now: float) -> list[Applied]:
        """Rows to their receipts' outcomes, one guarded statement per (source, outcome)."""
        alike: dict[tuple[Status, Status, str | None], list[int]] = {}
        details: dict[int, dict[str, Any]] = {}
        for found, delivered, code, message in moves:
            to, reason = _outcome(delivered, code, found.status)
            alike.setdefault((found.status, to, reason), []).append(found.nid)
            details[found.nid] = _detail(code, message, found.status)
        applied: list[Applied] = []
        for (source, to, reason), ids in alike.items():
            applied += self.notifications.move_alike(
                conn, ids, source=source, to=to, reason=reason, details=details, now=now
            )
        return applied

    def _stored(self, conn: Connection, provider: str, refs: Sequence[str]) -> set[str]:
        """The references among ``refs`` already stored (a repeat of an earlier receipt)."""
        return set(
            conn.execute(
                select(R.c.provider_ref).where(
                    R.c.provider == provider, among(conn, R.c.provider_ref, refs)
                )
            ).scalars()
        )

    def _sent(self, conn: Connection, provider: str, refs: Sequence[str]) -> dict[str, list[Open]]:
        """Reference → the ``sent`` (or ``unknown``) notifications it names, found by the
        (provider, provider_ref) index: the status test is written so that no index
        serves it (see :meth:`_matches` for why SQLite would otherwise read every ``sent``
        row)."""
        sent: dict[str, list[Open]] = {}
        rows = conn.execute(
            select(N.c.id, N.c.provider_ref, N.c.status, N.c.version).where(
                N.c.provider == provider,
                among(conn, N.c.provider_ref, refs),
                unindexed(N.c.status).in_([s.value for s in AWAITING]),
            )
        )
        for nid, ref, status, version in tuples(rows):
            sent.setdefault(ref, []).append(Open(nid, Status(status), version))
        return sent

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
                    R.c.id,
                    N.c.id,
                    N.c.status,
                    N.c.version,
                    R.c.delivered,
                    R.c.code,
                    R.c.message,
                )
                .join(N, (N.c.provider_ref == R.c.provider_ref) & (N.c.provider == R.c.provider))
                .where(R.c.applied_at.is_(None), N.c.status.in_([s.value for s in AWAITING]))
                .limit(limit)
            )
            matches = [
                Match(rid, Open(nid, Status(status), version), delivered, code, message)
                for rid, nid, status, version, delivered, code, message in tuples(
                    conn.execute(query)
                )
            ]
            return self._apply_rows(conn, matches, now)
        by_provider: dict[str, list[str]] = {}
        for provider, ref in refs:
            by_provider.setdefault(provider, []).append(ref)
        applied: list[Applied] = []
        for provider, provider_refs in by_provider.items():
            for start in range(0, len(provider_refs), IN_LIST_LIMIT):
                chunk = provider_refs[start : start + IN_LIST_LIMIT]
                applied += self._apply_rows(conn, self._matches(conn, provider, chunk), now)
        return applied

    def _matches(self, conn: Connection, provider: str, refs: Sequence[str]) -> list[Match]:
        """The unapplied receipts among ``refs`` with the ``sent`` notifications they name.

        Two look-ups, each table by its own (provider, provider_ref) index, joined here.
        As one SQL join (with ``status = 'sent'``), SQLite — which keeps no statistics —
        drives it from the status index and reads every ``sent`` notification for each
        chunk of references: 8 ms a chunk with 30,000 sent, the report pull's largest
        cost (``bench/reports.py``). For the same reason the status test is written so
        that no index serves it; the transition checks it again under the write lock.
        """
        receipts = conn.execute(
            select(R.c.id, R.c.provider_ref, R.c.delivered, R.c.code, R.c.message).where(
                R.c.provider == provider,
                among(conn, R.c.provider_ref, refs),
                R.c.applied_at.is_(None),
            )
        ).all()
        if not receipts:
            return []
        sent = self._sent(conn, provider, [r.provider_ref for r in receipts])
        return [
            Match(r.id, found, r.delivered, r.code, r.message)
            for r in receipts
            for found in sent.get(r.provider_ref, ())
        ]

    def _apply_rows(self, conn: Connection, rows: Sequence[Match], now: float) -> list[Applied]:
        if not rows:
            return []
        changes = [_change(row.open, row.delivered, row.code, row.message) for row in rows]
        applied = self.notifications.transition(changes, now=now, conn=conn)
        conn.execute(
            update(R)
            .where(R.c.id == bindparam("b_rid"))
            .values(applied_at=now, notification_id=bindparam("b_nid")),
            [{"b_rid": row.rid, "b_nid": row.open.nid} for row in rows],
        )
        return applied

    def pending(self) -> int:

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


def _message(message: str | None) -> str | None:
    return (message or "")[:255] or None


def _receipt_row(receipt: NewReceipt, now: float) -> dict[str, Any]:
    return {
        "provider": receipt.provider,
        "provider_ref": receipt.provider_ref,
        "delivered": receipt.delivered,
        "code": receipt.code,
        "message": _message(receipt.message),
        "detail": receipt.detail,
        "received_at": now,
        "applied_at": None,
        "notification_id": None,
    }


def _outcome(
    delivered: bool, code: str | None, source: Status = Status.SENT
) -> tuple[Status, str | None]:
    """The status a receipt asks for, and the reason kept with it (a repair says so)."""
    to, reason = (Status.DELIVERED, None) if delivered else (Status.UNDELIVERED, f"receipt:{code}")
    if source is Status.UNKNOWN:
        reason = f"repaired: {reason or 'receipt:delivered'} after unknown"
    return to, reason


def _change(found: Open, delivered: bool, code: str | None, message: str | None) -> Change:
    """The transition a receipt asks for (its code and words kept in the event)."""
    to, reason = _outcome(delivered, code, found.status)
    return Change(
        id=found.nid,
        to=to,
        expect=Expect(frozenset({found.status}), found.version),
        reason=reason,
        values={"next_attempt_at": None},
        detail=_detail(code, message, found.status),
    )


def _detail(code: str | None, message: str | None, source: Status = Status.SENT) -> dict[str, Any]:
    """What a receipt's event keeps: the provider's code and words (and, for a repair,
    the status it repaired)."""
    detail: dict[str, Any] = {"code": code, "message": message}
    if source is Status.UNKNOWN:
        detail["repaired"] = Status.UNKNOWN.value
    return detail
