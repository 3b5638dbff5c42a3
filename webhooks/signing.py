"""Standard Webhooks signing (https://www.standardwebhooks.com), both sides of it.

A message is signed as ``v1,`` + base64(HMAC-SHA256(key, ``{id}.{timestamp}.{body}``)),
the key being the base64 part of the endpoint's ``whsec_…`` secret, decoded. While a
secret is being rotated the header carries one signature per secret, separated by a
space, so a receiver holding either one accepts the message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105  (the prefix the standard names, no secret)
#: random bytes in a new secret (the Standard Webhooks libraries use 24 to 64)
SECRET_BYTES = 32
#: how far a message's timestamp may be from the receiver's clock (replay window)
TOLERANCE = 5 * 60


class WebhookVerificationError(ValueError):
    """A message whose headers or signature do not prove it came from the secret's owner."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise WebhookVerificationError("the secret is not whsec_ and base64") from None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One signature, ``v1,<base64>``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: one signature for each secret in use, space-separated."""
    return " ".join(sign(secret, message_id, timestamp, body) for secret in secrets_)


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE,
) -> None:
    """Raise :class:`WebhookVerificationError` unless ``body`` with these headers was
    signed with ``secret`` within ``tolerance`` seconds of ``now``. Header names are
    matched without regard to case (any mapping: a dict, Starlette's or httpx's headers)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id = lowered["webhook-id"]
        stamp = lowered["webhook-timestamp"]
        signatures = lowered["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"the {missing.args[0]} header is missing") from None
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not Unix seconds") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far from now")
    raw = body.encode() if isinstance(body, str) else body
    expected = sign(secret, message_id, timestamp, raw).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise WebhookVerificationError("no signature matches")
