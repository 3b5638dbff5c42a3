"""A notification as callers see it (CLI ``status --json`` and ``GET /v1/notifications/{id}``):
the number masked, times in ISO 8601, the history of its status changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from providers.base import mask
from store import NotificationStore, Status


def iso(moment: float | None) -> str | None:
    return (
        None
        if moment is None
        else datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
    )


def notification_view(
    store: NotificationStore, notification_id: int, *, owner: str | None = None
) -> dict[str, Any] | None:
    """None for an id that does not exist, and, with ``owner``, for one that key name
    did not make: the two are one answer."""
    row = store.get(notification_id, owner=owner)
    if row is None:
        return None
    events = [
        {
            "at": iso(e.at),
            "from": Status(e.from_status).value if e.from_status else None,
            "to": Status(e.to_status).value,
            "reason": e.reason,
            "detail": e.detail,
        }
        for e in store.events(notification_id)
    ]
    return {
        "id": row.id,
        "provider": row.provider,
        "to": mask(row.to),
        "status": Status(row.status).value,
        "reason": row.reason,
        "attempts": row.attempts,
        "provider_ref": row.provider_ref,
        "provider_code": row.provider_code,
        "next_attempt_at": iso(row.next_attempt_at),
        "created_at": iso(row.created_at),
        "campaign_id": row.campaign_id,
        "priority": row.priority,
        "owner": row.owner,
        "events": events,
    }
