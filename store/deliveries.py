"""Webhook deliveries after their event is written (store/outbox.py): claimed by the
pump, tried by a task, delivered, retried, failed, replayed, and the log of every
attempt.

A delivery is ``pending`` until an attempt gets a 2xx (``delivered``) or its retries
are spent (``failed``); a failed one stays, and a replay makes it ``pending`` again.
Every change of a delivery is a compare-and-set on its status and its attempt count,
so two copies of one delivery task record one outcome.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Update, bindparam, func, select, update

from store.bulk import insert_rows
from store.db import Store
from store.schema import WebhookAttempt, WebhookDelivery, WebhookEndpoint, table_of
from store.webhooks import signing_secrets

W = table_of(WebhookEndpoint)
D = table_of(WebhookDelivery)
A = table_of(WebhookAttempt)
ATTEMPT_COLUMNS = ("delivery_id", "at", "seconds", "status_code", "answer", "ok")
#: characters of a receiver's answer kept in the delivery log
ANSWER_KEPT = 512


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _after(
    attempts: int, result: AttemptResult, now: float, waits: Sequence[float]
) -> dict[str, Any]:
    """A delivery's columns after its ``attempts``-th attempt got ``result``."""
    if result.ok:
        return {
            "status": DeliveryStatus.DELIVERED.value,
            "delivered_at": now,
            "next_attempt_at": None,
        }
    if attempts > len(waits):
        return {"status": DeliveryStatus.FAILED.value, "next_attempt_at": None}
    return {"status": DeliveryStatus.PENDING.value, "next_attempt_at": now + waits[attempts - 1]}


#: a delivery task's statements, built once: each batch of up to 100 events then neither
#: builds them again nor coerces every id of their ``IN`` lists one by one
_PENDING = (
    select(D, W.c.url, W.c.secret, W.c.previous_secret, W.c.previous_until)
    .join(W, W.c.id == D.c.endpoint_id)
    .where(
        D.c.id.in_(bindparam("ids", expanding=True)),
        D.c.status == DeliveryStatus.PENDING.value,
        W.c.disabled_at.is_(None),
    )
    .order_by(D.c.id)
)
_PRESENT = select(D.c.id).where(D.c.id.in_(bindparam("ids", expanding=True)))
_DUE_AGAIN = (
    update(D)
    .where(D.c.id.in_(bindparam("ids", expanding=True)), D.c.status == DeliveryStatus.PENDING.value)
    .values(next_attempt_at=bindparam("retry_at"))
)


@functools.cache
def _moving(columns: tuple[str, ...]) -> Update:
    """The compare-and-set of one kind of outcome, setting ``columns`` besides the
    attempt count and time (its values bound as ``new_<column>``)."""
    return (
        update(D)
        .where(
            D.c.id.in_(bindparam("ids", expanding=True)),
            D.c.status == DeliveryStatus.PENDING.value,
            D.c.attempts == bindparam("made"),
        )
        .values(
            attempts=bindparam("made_now"),
            last_attempt_at=bindparam("at"),
            **{column: bindparam(f"new_{column}") for column in columns},
        )
        .returning(D.c.id)
    )


@dataclass(frozen=True)
class Delivery:
    """A pending delivery as a delivery task reads it: what to send, where, signed how."""

    id: int
    endpoint_id: int
    message_id: str
    body: bytes
    #: attempts made before this one (the compare-and-set of its outcome)
    attempts: int
    url: str
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt got: a status code and the start of the answer, or no answer
    (``status_code`` None) and why."""

    status_code: int | None
    answer: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryStore(Store):
    # -- the pump and the delivery task ----------------------------------------------

    def claim_due(self, *, now: float, lease: float, limit: int) -> list[tuple[int, int]]:
        """Pending deliveries due by ``now`` (id, endpoint id), pushed ``lease`` seconds
        ahead so the next pump leaves them to the task it is about to hand them to; a
        task that dies with its worker is found again once the lease is over."""
        # read first: the pump asks every second, and on SQLite a write transaction would
        # take the one write lock every second for nothing
        with self.db.read() as conn:
            due: list[int] = list(
                conn.execute(
                    select(D.c.id)
                    .where(D.c.status == DeliveryStatus.PENDING.value, D.c.next_attempt_at <= now)
                    .order_by(D.c.next_attempt_at)
                    .limit(limit)
                ).scalars()
            )
        if not due:
            return []
        with self.db.write() as conn:  # the claim itself: a compare-and-set on the same terms
            claimed = conn.execute(
                update(D)
                .where(
                    D.c.id.in_(due),
                    D.c.status == DeliveryStatus.PENDING.value,
                    D.c.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + lease)
                .returning(D.c.id, D.c.endpoint_id)
            )
            return sorted((row.id, row.endpoint_id) for row in claimed)

    def pending(self, delivery_ids: Sequence[int], *, now: float) -> list[Delivery]:
        """The deliveries to attempt, in id order; those no longer pending (a copy of
        their task, or a replay, got there first) or whose endpoint is disabled are left
        out."""
        with self.db.read() as conn:
            rows = conn.execute(_PENDING, {"ids": list(delivery_ids)}).all()
        return [
            Delivery(
                id=row.id,
                endpoint_id=row.endpoint_id,
                message_id=row.message_id,
                body=row.body.encode(),
                attempts=row.attempts,
                url=row.url,
                secrets=tuple(signing_secrets(row, now)),
            )
            for row in rows
        ]

    def record(
        self,
        tried: Sequence[tuple[Delivery, AttemptResult]],
        *,
        now: float,
        waits: Sequence[float],
        disable_after: float,
        untried: Sequence[Delivery] = (),
    ) -> list[DeliveryStatus | None]:
        """Log each attempt and decide what follows it, in one transaction: delivered;
        due again after the next wait of ``waits``; or failed once they are spent. An
        endpoint's run of failures ends with a success, and one that has failed
        everything for ``disable_after`` seconds is disabled (its pending deliveries
        fail with it). ``untried`` deliveries (a batch cut short) are due again when the
        last failure's next attempt is, or at once if nothing failed. Returns each tried
        delivery's status, None where another copy recorded first."""
        statuses: list[DeliveryStatus | None] = []
        retry_at = now
        health: dict[int, bool] = {}
        with self.db.write() as conn:
            # an endpoint deleted meanwhile took its deliveries with it: nothing to log
            there: set[int] = set(
                conn.execute(_PRESENT, {"ids": [d.id for d, _ in tried]}).scalars()
            )
            insert_rows(
                conn,
                A,
                ATTEMPT_COLUMNS,
                [
                    (d.id, now, r.seconds, r.status_code, r.answer[:ANSWER_KEPT], r.ok)
                    for d, r in tried
                    if d.id in there
                ],
            )
            # one compare-and-set per kind of outcome (delivered; due again after the
            # same wait; failed), not one a delivery: a batch is a statement or two
            groups: dict[tuple[int, tuple[tuple[str, Any], ...]], list[Delivery]] = {}
            for delivery, result in tried:
                values = _after(delivery.attempts + 1, result, now, waits)
                retry_at = max(retry_at, values["next_attempt_at"] or now)
                groups.setdefault((delivery.attempts, tuple(sorted(values.items()))), []).append(
                    delivery
                )
            moved: dict[int, DeliveryStatus] = {}
            for (attempts, items), members in groups.items():
                changed = dict(items)
                ids: list[int] = list(
                    conn.execute(
                        _moving(tuple(changed)),
                        {
                            "ids": [d.id for d in members],
                            "made": attempts,
                            "made_now": attempts + 1,
                            "at": now,
                            **{f"new_{column}": value for column, value in items},
                        },
                    ).scalars()
                )
                moved |= dict.fromkeys(ids, DeliveryStatus(changed["status"]))
            for delivery, result in tried:
                statuses.append(moved.get(delivery.id))
                if delivery.id in moved:
                    was_ok = health.get(delivery.endpoint_id, False)
                    health[delivery.endpoint_id] = was_ok or result.ok
            if untried:
                conn.execute(_DUE_AGAIN, {"ids": [d.id for d in untried], "retry_at": retry_at})
            for endpoint_id, ok in health.items():
                self._endpoint_health(conn, endpoint_id, ok, now, disable_after)
        return statuses

    @staticmethod
    def _endpoint_health(
        conn: Connection, endpoint_id: int, ok: bool, now: float, disable_after: float
    ) -> None:
        """A success ends the endpoint's run of failures; a failure starts one (or, past
        ``disable_after``, disables the endpoint and fails what waits for it)."""
        if ok:
            conn.execute(
                update(W)
                .where(W.c.id == endpoint_id, W.c.failing_since.is_not(None))
                .values(failing_since=None)
            )
            return
        conn.execute(
            update(W)
            .where(W.c.id == endpoint_id, W.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        disabled = conn.execute(
            update(W)
            .where(
                W.c.id == endpoint_id,
                W.c.disabled_at.is_(None),
                W.c.failing_since <= now - disable_after,
            )
            .values(disabled_at=now)
        ).rowcount
        if disabled:
            conn.execute(
                update(D)
                .where(D.c.endpoint_id == endpoint_id, D.c.status == DeliveryStatus.PENDING.value)
                .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None)
            )

    # -- what the API and the command line show and replay ----------------------------

    def log(
        self,
        endpoint_id: int,
        *,
        status: DeliveryStatus | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """An endpoint's deliveries, newest first, each with its attempts."""
        query = select(D).where(D.c.endpoint_id == endpoint_id).order_by(D.c.id.desc())
        if status is not None:
            query = query.where(D.c.status == status.value)
        if before is not None:
            query = query.where(D.c.id < before)
        with self.db.read() as conn:
            deliveries = list(conn.execute(query.limit(limit)))
            attempts: dict[int, list[dict[str, Any]]] = {d.id: [] for d in deliveries}
            if deliveries:
                for attempt in conn.execute(
                    select(A).where(A.c.delivery_id.in_(list(attempts))).order_by(A.c.id)
                ):
                    attempts[attempt.delivery_id].append(
                        {
                            "at": attempt.at,
                            "seconds": round(attempt.seconds, 3),
                            "status_code": attempt.status_code,
                            "answer": attempt.answer,
                            "ok": attempt.ok,
                        }
                    )
        return [
            {
                "id": d.id,
                "webhook_id": d.message_id,
                "type": d.type,
                "subject_id": d.subject_id,
                "status": d.status,
                "attempts": attempts[d.id],
                "next_attempt_at": d.next_attempt_at,
                "created_at": d.created_at,
                "delivered_at": d.delivered_at,
            }
            for d in deliveries
        ]

    def replay(self, endpoint_id: int, delivery_id: int, *, now: float | None = None) -> bool:
        """Send a delivery again from the start of its retries, under its same id (an
        endpoint disabled for its failures is enabled again: someone is looking)."""
        now = time.time() if now is None else now
        with self.db.write() as conn:
            found = conn.execute(
                update(D)
                .where(D.c.id == delivery_id, D.c.endpoint_id == endpoint_id)
                .values(status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now)
            ).rowcount
            if found:
                conn.execute(
                    update(W)
                    .where(W.c.id == endpoint_id)
                    .values(disabled_at=None, failing_since=None)
                )
        return bool(found)

    # -- what the metrics read ---------------------------------------------------------

    def backlog(self) -> tuple[int, float | None]:
        """Pending deliveries, and when the oldest of them was made."""
        with self.db.read() as conn:
            count, oldest = conn.execute(
                select(func.count(), func.min(D.c.created_at)).where(
                    D.c.status == DeliveryStatus.PENDING.value
                )
            ).one()
        return int(cast(int, count)), None if oldest is None else float(cast(float, oldest))
