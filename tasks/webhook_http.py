"""One webhook attempt over HTTP: signed now, sent to an address checked now, answered
within 10 s, never redirected, at most 64 KB of the answer read.

The request goes through :class:`~tasks.webhook_conn.WebhookClient`, a keep-alive pool
whose connections are opened only to addresses checked as they are connected to (DNS
rebinding refused), TLS verified against the URL's host; its bytes are written and its
answer read by :mod:`tasks.webhook_wire`, a strict HTTP/1.1 of our own that does only
what an attempt needs. A 3xx is an answer like any other, its ``location`` never
followed. Whatever a receiver or the network does comes back as an
:class:`~store.deliveries.AttemptResult`, never as an exception.
"""

from __future__ import annotations

import ssl
import time

from store.deliveries import AttemptResult, Delivery
from tasks.webhook_conn import WebhookClient
from tasks.webhook_wire import HttpError, Timeout
from webhooks import UnsafeUrl, signature_header
from webhooks.addresses import Resolver, system_resolver

#: a 2xx within this many seconds is success (README, "Webhooks")
TIMEOUT = 10.0
#: bytes of a receiver's answer read at the most; the rest is never read
MAX_ANSWER = 64 * 1024
USER_AGENT = "notifyq-webhooks/1"


def webhook_client(
    *,
    allow_private: bool,
    resolve: Resolver = system_resolver,
    timeout: float = TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> WebhookClient:
    """The client of every attempt: no redirects, no proxies from the environment, the
    system's certificate authorities unless ``ssl_context`` says otherwise."""
    return WebhookClient(
        allow_private=allow_private,
        resolve=resolve,
        timeout=timeout,
        keep=MAX_ANSWER,
        ssl_context=ssl_context,
    )


def signed_headers(delivery: Delivery, now: float) -> list[tuple[str, str]]:
    stamp = int(now)
    return [
        ("content-type", "application/json"),
        ("user-agent", USER_AGENT),
        ("webhook-id", delivery.message_id),
        ("webhook-timestamp", str(stamp)),
        (
            "webhook-signature",
            signature_header(delivery.secrets, delivery.message_id, stamp, delivery.body),
        ),
    ]


def attempt(
    client: WebhookClient, delivery: Delivery, *, now: float | None = None
) -> AttemptResult:
    """POST the delivery once; what came back, or why nothing did (never raises for
    what a receiver or the network does)."""
    now = time.time() if now is None else now
    started = time.monotonic()
    try:
        status, body = client.post(delivery.url, delivery.body, signed_headers(delivery, now))
    except UnsafeUrl as refused:
        return AttemptResult(None, f"refused: {refused}", time.monotonic() - started)
    except Timeout as error:
        return AttemptResult(None, f"timeout: {type(error).__name__}", time.monotonic() - started)
    except HttpError as error:
        why = f"{type(error).__name__}: {error}"
        return AttemptResult(None, why, time.monotonic() - started)
    seconds = time.monotonic() - started
    if seconds > TIMEOUT:
        return AttemptResult(None, f"timeout: answered after {seconds:.1f} s", seconds)
    return AttemptResult(status, body.decode("utf-8", "replace"), seconds)
