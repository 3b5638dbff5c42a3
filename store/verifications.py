"""Verification rows, and the erasure of the codes that notifications carried.

A verification keeps only a salt and an HMAC of its code. Its status moves by
compare-and-set on ``version`` (the value read), so two checks of one code racing each
other approve it once. The notification that carried the code (``secret``) keeps it
only until its send is final; :func:`erased` is what that final write adds, and
:func:`erase_finished` the backstop for rows that ended another way (a sweeper's
``unknown``, a cancel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Row, Select, insert, select, update

from providers.numbers import mask
from store.db import Store
from store.outbox import record_event
from store.schema import DEFAULT_OWNER, Notification, Verification, table_of
from store.status import WAITING, Status

V = table_of(Verification)
N = table_of(Notification)

PENDING = "pending"
APPROVED = "approved"
EXPIRED = "expired"
CANCELLED = "cancelled"
TOO_MANY_ATTEMPTS = "too_many_attempts"
#: statuses that make a webhook event (``verification.approved``, ``verification.expired``)
REPORTED = frozenset({APPROVED, EXPIRED})
#: statuses a verification never leaves
ENDED = frozenset({APPROVED, EXPIRED, CANCELLED, TOO_MANY_ATTEMPTS})

#: what a secret notification's code-bearing columns become once its send is final
ERASED: Mapping[str, Any] = {"params": [], "content": None, "route": None}
#: statuses after which a notification is never sent again (its code may go)
SEND_FINAL = frozenset(set(Status) - WAITING - {Status.SENDING})


def erased(row: Any) -> Mapping[str, Any]:
    """The values a change that ends ``row``'s send adds: the code's columns cleared
    when the row carries a secret, nothing otherwise."""
    return ERASED if getattr(row, "secret", False) else {}


@dataclass(frozen=True)
class NewVerification:
    to: str
    purpose: str
    channel: str
    provider: str
    salt: str
    code_hmac: str
    length: int
    max_attempts: int
    expires_at: float
    #: the name of the API key that asks for it (store/keys.py)
    owner: str = DEFAULT_OWNER


class VerificationStore(Store):
    def insert(
        self,
        conn: Connection,
        new: NewVerification,
        *,
        notification_id: int,
        fallback_id: int | None,
        now: float,
    ) -> int:
        values = {
            **asdict(new),
            "status": PENDING,
            "attempts": 0,
            "version": 0,
            "notification_id": notification_id,
            "fallback_id": fallback_id,
            "created_at": now,
            "updated_at": now,
        }
        return int(conn.execute(insert(V).returning(V.c.id), [values]).scalar_one())

    def get(self, verification_id: int, *, owner: str | None = None) -> Row[Any] | None:
        """The row; with ``owner``, only if that key name made it."""
        with self.db.read() as conn:
            return conn.execute(_one(verification_id, owner)).first()

    def locked(
        self, conn: Connection, verification_id: int, *, owner: str | None = None
    ) -> Row[Any] | None:
        """The row, locked for this write transaction (PostgreSQL ``FOR UPDATE``; SQLite
        holds its one write lock already); with ``owner``, only that key name's."""
        query = _one(verification_id, owner)
        if not self.db.is_sqlite:
            query = query.with_for_update()
        return conn.execute(query).first()

    def pending_for(self, conn: Connection, to: str, purpose: str) -> list[Row[Any]]:
        return list(
            conn.execute(
                select(V).where(V.c.to == to, V.c.purpose == purpose, V.c.status == PENDING)
            )
        )

    def overdue(self, *, now: float, limit: int = 500) -> list[Row[Any]]:
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(V)
                    .where(V.c.status == PENDING, V.c.expires_at <= now)
                    .order_by(V.c.expires_at)
                    .limit(limit)
                )
            )

    def move(self, conn: Connection, row: Any, *, now: float, **values: Any) -> bool:
        """Compare-and-set on the version read: True if this change won. An approval or
        an expiry writes its webhook event in the same transaction."""
        result = conn.execute(
            update(V)
            .where(V.c.id == row.id, V.c.version == row.version)
            .values(**values, version=V.c.version + 1, updated_at=now)
        )
        moved = bool(result.rowcount)
        status = values.get("status")
        if moved and status in REPORTED:
            data = {
                "status": status,
                "to": mask(row.to),
                "purpose": row.purpose,
                "channel": row.channel,
                "version": row.version + 1,
            }
            record_event(
                conn,
                owner=row.owner,
                event_type=f"verification.{status}",
                subject_id=row.id,
                data=data,
                now=now,
            )
        return moved


def _one(verification_id: int, owner: str | None) -> Select[tuple[object, ...]]:
    query = select(V).where(V.c.id == verification_id)
    return query if owner is None else query.where(V.c.owner == owner)


def erase_finished(conn: Connection, ids: Sequence[int]) -> int:
    """Clear the code from those of ``ids`` that carry one and will never be sent again
    (the backstop beside the final write's own erasure). Not a status change: the
    status is only read, and a row in :data:`SEND_FINAL` never goes back to waiting."""
    ids = [i for i in ids if i is not None]
    if not ids:
        return 0
    result = conn.execute(
        update(N)
        .where(
            N.c.id.in_(ids),
            N.c.secret.is_(True),
            N.c.status.in_([s.value for s in SEND_FINAL]),
        )
        .values(**ERASED)
    )
    return result.rowcount or 0
