"""Notification statuses and the only transitions the store will make.

Every status change goes through :func:`store.notifications.NotificationStore.transition`,
which refuses anything not in :data:`ALLOWED_FROM`; no other module writes a status.

::

    queued ──► sending ──► sent ──► delivered | undelivered
      │  ▲        │
      │  │        ├──► retrying ──► sending …      (transient: backoff, capped attempts)
      │  │        ├──► deferred ──► sending …      (provider said "capped", circuit open)
      │  └────────┤                                (fail-over to the next provider of a route)
      │           ├──► failed                      (permanent, or out of attempts)
      │           └──► unknown                     (the call may have been placed)
      │                  ▲  └──► delivered | undelivered   (a receipt after all: repaired)
      │                  └── sent                  (no receipt within NOTIFYQ_RECEIPT_TIMEOUT)
      ├──► deferred (cap or window closed, not-before) ──► sending …
      └──► cancelled (operator) — from any waiting status
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    DEFERRED = "deferred"
    RETRYING = "retrying"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self in FINAL

    @property
    def is_waiting(self) -> bool:
        """Not yet handed to a provider: a dispatch may pick it up."""
        return self in WAITING


WAITING = frozenset({Status.QUEUED, Status.DEFERRED, Status.RETRYING})
FINAL = frozenset(
    {Status.DELIVERED, Status.UNDELIVERED, Status.FAILED, Status.CANCELLED, Status.UNKNOWN}
)

#: to-status → the statuses it may be entered from.
ALLOWED_FROM: dict[Status, frozenset[Status]] = {
    # back to queued: fail-over to the next provider, or NOTIFYQ_ON_AMBIGUOUS=resend,
    # or a paused campaign handing its released rows back
    Status.QUEUED: frozenset({Status.SENDING, Status.DEFERRED, Status.RETRYING, Status.QUEUED}),
    Status.DEFERRED: WAITING | {Status.SENDING},
    Status.RETRYING: frozenset({Status.SENDING}),
    Status.SENDING: WAITING,
    Status.SENT: frozenset({Status.SENDING}),
    # from unknown: a receipt or report for a call we could not confirm repairs it
    Status.DELIVERED: frozenset({Status.SENT, Status.UNKNOWN}),
    Status.UNDELIVERED: frozenset({Status.SENT, Status.UNKNOWN}),
    Status.FAILED: WAITING | {Status.SENDING},
    Status.CANCELLED: WAITING,
    # from sent: no receipt came within the receipt timeout (the sweeper ends it)
    Status.UNKNOWN: frozenset({Status.SENDING, Status.SENT}),
}
