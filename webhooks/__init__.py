"""Status webhooks' ground floor: event names, Standard Webhooks signing (and
:func:`verify_webhook` for receivers), and which addresses a webhook may reach.

Imports nothing of ours, so a receiver can ``from webhooks import verify_webhook``
without the rest of notifyq, and every layer above can share the same rules.
"""

from webhooks.addresses import UnsafeUrl, check_url, guarded_address
from webhooks.events import EVENT_TYPES, event_for_status
from webhooks.signing import (
    WebhookVerificationError,
    new_secret,
    sign,
    signature_header,
    verify_webhook,
)

__all__ = [
    "EVENT_TYPES",
    "UnsafeUrl",
    "WebhookVerificationError",
    "check_url",
    "event_for_status",
    "guarded_address",
    "new_secret",
    "sign",
    "signature_header",
    "verify_webhook",
]
