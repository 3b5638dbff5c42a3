"""One webhook attempt over HTTP: signed now, sent to an address checked now, answered
within 10 s, never redirected, at most 64 KB of the answer read.

The connection is opened by :class:`GuardedBackend`, httpcore's own socket backend
behind a check: the host is resolved when the connection is made, every address it
resolves to must be public (``webhooks.addresses``), and the address checked is the one
connected to — so a name that resolved to a public address at registration and to
``127.0.0.1`` now (DNS rebinding) is refused, not followed. TLS still verifies the
certificate against the URL's host: only the TCP connect is ours.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from store.deliveries import AttemptResult, Delivery
from webhooks import UnsafeUrl, guarded_address, signature_header
from webhooks.addresses import Resolver, system_resolver

#: a 2xx within this many seconds is success (README, "Webhooks")
TIMEOUT = 10.0
#: bytes of a receiver's answer read at the most; the rest is never read
MAX_ANSWER = 64 * 1024
USER_AGENT = "notifyq-webhooks/1"


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, connecting only to addresses we may reach."""

    def __init__(self, *, allow_private: bool, resolve: Resolver = system_resolver) -> None:
        self.inner = httpcore.SyncBackend()
        self.allow_private = allow_private
        self.resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        address = guarded_address(
            host, port, allow_private=self.allow_private, resolve=self.resolve
        )
        return self.inner.connect_tcp(address, port, timeout, local_address, socket_options)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise UnsafeUrl("webhooks go over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport on a pool whose every connection goes through the guard."""

    def __init__(self, *, allow_private: bool, resolve: Resolver = system_resolver) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private=allow_private, resolve=resolve),
        )


def webhook_client(
    *, allow_private: bool, resolve: Resolver = system_resolver, timeout: float = TIMEOUT
) -> httpx.Client:
    """The client of every attempt: no redirects, no proxies from the environment."""
    return httpx.Client(
        transport=GuardedTransport(allow_private=allow_private, resolve=resolve),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    )


def signed_headers(delivery: Delivery, now: float) -> dict[str, str]:
    stamp = int(now)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature_header(
            delivery.secrets, delivery.message_id, stamp, delivery.body
        ),
    }


def attempt(client: httpx.Client, delivery: Delivery, *, now: float | None = None) -> AttemptResult:
    """POST the delivery once; what came back, or why nothing did (never raises for
    what a receiver or the network does)."""
    now = time.time() if now is None else now
    started = time.monotonic()
    try:
        with client.stream(
            "POST", delivery.url, content=delivery.body, headers=signed_headers(delivery, now)
        ) as response:
            answer = _read_some(response, started)
            seconds = time.monotonic() - started
            if seconds > TIMEOUT:
                return AttemptResult(None, f"timeout: answered after {seconds:.1f} s", seconds)
            return AttemptResult(response.status_code, answer, seconds)
    except UnsafeUrl as refused:
        return AttemptResult(None, f"refused: {refused}", time.monotonic() - started)
    except httpx.TimeoutException as error:
        return AttemptResult(None, f"timeout: {type(error).__name__}", time.monotonic() - started)
    except httpx.HTTPError as error:
        why = f"{type(error).__name__}: {error}"
        return AttemptResult(None, why, time.monotonic() - started)


def _read_some(response: httpx.Response, started: float) -> str:
    """At most :data:`MAX_ANSWER` bytes of the body, and none after the deadline."""
    kept = bytearray()
    for chunk in response.iter_raw():
        kept += chunk
        if len(kept) >= MAX_ANSWER or time.monotonic() - started > TIMEOUT:
            break
    return bytes(kept[:MAX_ANSWER]).decode("utf-8", "replace")
