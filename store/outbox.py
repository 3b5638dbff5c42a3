"""The webhook outbox: events written in the transaction of the change they report.

:func:`record_notification_events` is called by the notifications store inside the
transaction that changes a status, so a change without its event or an event without
its change cannot be committed. One statement finds the rows' owners' endpoints that
want the event (a join on the owner; nothing when no endpoint is registered), one
inserts the deliveries. The body is fixed at that moment and carries the row's
``version``, so a receiver that gets an older event late can tell it is older.

What becomes of a delivery after (claimed, tried, retried, failed, replayed) is
store/deliveries.py's.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from providers.numbers import mask
from store.bulk import IN_LIST_LIMIT, among, insert_rows
from store.deliveries import DeliveryStatus
from store.schema import Notification, WebhookDelivery, WebhookEndpoint, table_of
from store.status import Status
from webhooks import event_for_status

N = table_of(Notification)
W = table_of(WebhookEndpoint)
D = table_of(WebhookDelivery)
DELIVERY_COLUMNS = (
    "endpoint_id",
    "message_id",
    "type",
    "subject_id",
    "body",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
)


def message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


_TARGET_COLUMNS = (
    N.c.id,
    N.c.provider,
    N.c.reason,
    N.c.to,
    N.c.idempotency_key,
    N.c.campaign_id,
    W.c.id.label("endpoint_id"),
    W.c.events,
)
_ENABLED = (W.c.owner == N.c.owner) & W.c.disabled_at.is_(None)
#: the changed rows' owners' endpoints, for the few rows of a dispatch's change: built
#: once, so each status change (this runs in every one that reports) neither builds the
#: statement nor computes its cache key again
_TARGETS = (
    select(*_TARGET_COLUMNS).join(W, _ENABLED).where(N.c.id.in_(bindparam("ids", expanding=True)))
)
#: rows a statement of :data:`_TARGETS` takes; more (a report page's) go as the bulk
#: writes do (``store.bulk.among``), a chunk of :data:`IN_LIST_LIMIT` at a time
FEW = 64


def _targets(conn: Connection, ids: Sequence[int]) -> list[Any]:
    if len(ids) <= FEW:
        return list(conn.execute(_TARGETS, {"ids": list(ids)}))
    found: list[Any] = []
    for start in range(0, len(ids), IN_LIST_LIMIT):
        chunk = ids[start : start + IN_LIST_LIMIT]
        found += conn.execute(
            select(*_TARGET_COLUMNS).join(W, _ENABLED).where(among(conn, N.c.id, chunk))
        )
    return found


def record_notification_events(
    conn: Connection, changes: Sequence[tuple[int, Status, int]], now: float
) -> int:
    """Outbox rows for the changes just written in ``conn``'s transaction: ``(id, new
    status, new version)`` each. Returns how many were written."""
    reported = {
        (notification_id, status): version
        for notification_id, status, version in changes
        if event_for_status(status)
    }
    if not reported:
        return 0
    targets = _targets(conn, sorted({notification_id for notification_id, _ in reported}))
    if not targets:
        return 0
    # each change looks at its own row's endpoints, not at every row's (a dispatch batch
    # reports 50 changes at once)
    endpoints: dict[int, list[Any]] = {}
    for target in targets:
        endpoints.setdefault(target.id, []).append(target)
    stamp = iso(now)
    rows: list[tuple[Any, ...]] = []
    for (notification_id, status), version in reported.items():
        event_type = event_for_status(status)
        body: str | None = None
        for target in endpoints.get(notification_id, ()):
            if target.events is not None and event_type not in target.events:
                continue
            body = body or _notification_body(target, status, version, stamp)
            rows.append(
                (
                    target.endpoint_id,
                    message_id(),
                    event_type,
                    notification_id,
                    body,
                    DeliveryStatus.PENDING.value,
                    0,
                    now,
                    now,
                )
            )
    insert_rows(conn, D, DELIVERY_COLUMNS, rows)
    return len(rows)


def record_event(
    conn: Connection,
    *,
    owner: str,
    event_type: str,
    subject_id: int,
    data: dict[str, Any],
    now: float,
) -> int:
    """Outbox rows for one event of a verification or a campaign of ``owner``, in
    ``conn``'s transaction (the change's own). Returns how many were written."""
    endpoints = conn.execute(
        select(W.c.id, W.c.events).where(W.c.owner == owner, W.c.disabled_at.is_(None))
    ).all()
    wanting = [e.id for e in endpoints if e.events is None or event_type in e.events]
    if not wanting:
        return 0
    stamp = iso(now)
    body = _body(event_type, {"id": subject_id, **data, "at": stamp}, stamp)
    pending = DeliveryStatus.PENDING.value
    rows = [
        (endpoint_id, message_id(), event_type, subject_id, body, pending, 0, now, now)
        for endpoint_id in wanting
    ]
    insert_rows(conn, D, DELIVERY_COLUMNS, rows)
    return len(rows)


def _body(event_type: str, data: dict[str, Any], stamp: str) -> str:
    """An event's JSON; ``stamp`` is its moment as :func:`iso` writes it."""
    return json.dumps(
        {"type": event_type, "timestamp": stamp, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _notification_body(row: Any, status: Status, version: int, stamp: str) -> str:
    """The event as the receiver reads it: the number masked, never a text or a code."""
    event_type = event_for_status(status)
    assert event_type is not None
    data = {
        "id": row.id,
        "status": status.value,
        "provider": row.provider,
        "reason": row.reason,
        "to": mask(row.to),
        "idempotency_key": row.idempotency_key,
        "campaign_id": row.campaign_id,
        "version": version,
        "at": stamp,
    }
    return _body(event_type, data, stamp)
