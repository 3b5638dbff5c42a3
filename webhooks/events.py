"""The events an endpoint may ask for, and which status change makes which."""

from __future__ import annotations

#: a notification's final (or handed-over) statuses that are reported, by status
NOTIFICATION_EVENTS = {
    status: f"notification.{status}"
    for status in ("sent", "delivered", "undelivered", "failed", "unknown", "cancelled")
}
VERIFICATION_EVENTS = ("verification.approved", "verification.expired")
CAMPAIGN_EVENTS = ("campaign.completed",)
EVENT_TYPES: tuple[str, ...] = (
    *NOTIFICATION_EVENTS.values(),
    *VERIFICATION_EVENTS,
    *CAMPAIGN_EVENTS,
)


def event_for_status(status: str) -> str | None:
    """The event a notification entering ``status`` makes, or None (a waiting status)."""
    return NOTIFICATION_EVENTS.get(status)
