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

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, select, update

from store import receipt_page as page
from store.bulk import IN_LIST_LIMIT, probed, tuples
from store.db import Database
from store.notifications import (
    Applied,
    Change,
    Expect,
    NotificationStore,
    unindexed,
)
from store.outbox import record_notification_events
from store.receipt_page import AWAITING
from store.schema import Notification, Receipt, ReportPull, table_of
from store.status import Status

log = logging.getLogger(__name__)

R = table_of(Receipt)
N = table_of(Notification)
P = table_of(ReportPull)
#: a status as the store spells it → the member, without a call into the enum per row
_STATUS = {s.value: s for s in Status}


class Open(NamedTuple):
    """A notification a receipt may still move, as read."""

    nid: int
    status: Status
    version: int


#: a receipt as a page holds it: (reference, delivered, code, message, detail)
Reading = tuple[str, bool, str | None, str | None, Mapping[str, Any] | None]


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
    detail: Mapping[str, Any] | None = None


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
        what ``record`` does (by provider, each as a page: :meth:`store_page`)."""
        by_provider: dict[str, list[Reading]] = {}
        for r in receipts:
            by_provider.setdefault(r.provider, []).append(
                (r.provider_ref, r.delivered, r.code, r.message, r.detail)
            )
        applied: list[Applied] = []
        for provider, batch in by_provider.items():
            applied += self.store_page(conn, provider, batch, now)
        return applied

    def store_page(
        self, conn: Connection, provider: str, receipts: Iterable[Reading], now: float
    ) -> list[Applied]:
        """One provider's receipts stored and applied inside the caller's transaction:
        what the report pull does with a page, each receipt a plain tuple (a frozen
        :class:`NewReceipt` for each of a page's thousand took 3% of the pull's CPU).

        Written set-based (``store.receipt_page``): the ``sent`` (or ``unknown``)
        notifications the receipts name are read, the new receipts stored already
        marked applied to them, and those notifications moved by one compare-and-set
        (on PostgreSQL all of it, events included, one statement). A reference twice in
        the page: the first is stored. A receipt stored before (a repeat) is applied as
        it was stored, if it is still pending.
        """
        rows: dict[str, page.PageRow] = {}
        for ref, delivered, code, message, detail in receipts:
            if ref not in rows:
                rows[ref] = (ref, delivered, code, _message(message), detail)
        if not rows:
            return []
        if conn.dialect.name == "postgresql":
            stored = page.store(conn, provider, list(rows.values()), now)
        else:
            stored = page.store_sqlite(conn, provider, list(rows.values()), now)
        if stored.planned is not None and len(stored.moved) < stored.planned:
            log.warning(
                "%d of %d receipt transitions refused: no longer at the status and version read",
                stored.planned - len(stored.moved),
                stored.planned,
            )
        applied = [
            Applied(nid, _STATUS[source], _STATUS[to]) for nid, _, source, to in stored.moved
        ]
        record_notification_events(
            conn, [(nid, _STATUS[to], version) for nid, version, _, to in stored.moved], now
        )
        refs = list(dict.fromkeys(stored.stored_before))  # a reference naming two rows
        return applied + self._apply_stored(conn, provider, refs, now)

    def _apply_stored(
        self, conn: Connection, provider: str, refs: Sequence[str], now: float
    ) -> list[Applied]:
        """Receipts among ``refs`` stored before and still pending, applied as stored."""
        applied: list[Applied] = []
        for start in range(0, len(refs), IN_LIST_LIMIT):
            chunk = refs[start : start + IN_LIST_LIMIT]
            applied += self._apply_rows(conn, self._matches(conn, provider, chunk), now)
        return applied

    def _sent(self, conn: Connection, provider: str, refs: Sequence[str]) -> dict[str, list[Open]]:
        """Reference → the ``sent`` (or ``unknown``) notifications it names, found by the
        (provider, provider_ref) index: the status test is written so that no index
        serves it (see :meth:`_matches` for why SQLite would otherwise read every ``sent``
        row)."""
        sent: dict[str, list[Open]] = {}
        rows = conn.execute(
            probed(
                conn,
                (N.c.id, N.c.provider_ref, N.c.status, N.c.version),
                N.c.provider_ref,
                refs,
                N.c.provider == provider,
                unindexed(N.c.status).in_([s.value for s in AWAITING]),
            )
        )
        for nid, ref, status, version in tuples(rows):
            sent.setdefault(ref, []).append(Open(nid, _STATUS[status], version))
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
            probed(
                conn,
                (R.c.id, R.c.provider_ref, R.c.delivered, R.c.code, R.c.message),
                R.c.provider_ref,
                refs,
                R.c.provider == provider,
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
