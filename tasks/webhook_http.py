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

import functools
import ssl
import time
from collections.abc import Iterable
from typing import Any, cast

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
        return CorkedStream(
            self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise UnsafeUrl("webhooks go over TCP only")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class CorkedStream(httpcore.NetworkStream):
    """A connection whose writes leave together at its next read: httpcore writes a
    request's head and its body apart, and on a kept-alive connection each ``send`` is a
    system call and a wake-up of the receiver, so a request costs one where it cost two."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner
        self.pending = bytearray()
        self.write_timeout: float | None = None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.pending += buffer
        self.write_timeout = timeout

    def flush(self) -> None:
        if self.pending:
            data = bytes(self.pending)
            self.pending.clear()
            self.inner.write(data, self.write_timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.flush()
        return self.inner.read(max_bytes, timeout)

    def close(self) -> None:
        self.pending.clear()
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self.flush()
        return CorkedStream(self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class WebhookClient:
    """The client of every attempt: httpx's engine (httpcore) on a pool whose every
    connection goes through the guard, each POST handed straight to it.

    httpx's ``Client`` and ``Request`` around it would merge URLs and headers, run
    auth, redirect and cookie hooks and wrap the answer for each request: more of a
    worker's CPU than the POST itself, for features a webhook never uses (no redirect
    is followed, no cookie kept, no proxy from the environment).
    """

    def __init__(
        self, *, allow_private: bool, resolve: Resolver = system_resolver, timeout: float
    ) -> None:
        self.pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private=allow_private, resolve=resolve),
        )
        self.extensions = {"timeout": httpx.Timeout(timeout).as_dict()}

    def post(self, url: str, body: bytes, headers: list[tuple[str, str]]) -> httpcore.Response:
        """The answer's head, its body left to be read (or not) and the answer closed."""
        target, host = _parsed(url)
        request = httpcore.Request(
            b"POST",
            target,
            headers=[("host", host), ("content-length", str(len(body))), *headers],
            content=body,
            extensions=self.extensions,
        )
        return self.pool.handle_request(request)

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> WebhookClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> tuple[httpcore.URL, str]:
    """An endpoint's URL and ``host`` header, worked out once, not at each of its events."""
    parsed = httpx.URL(url)
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    return target, parsed.netloc.decode("ascii")


#: what httpcore raises for what a receiver or the network does (timeouts apart)
NETWORK_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


def webhook_client(
    *, allow_private: bool, resolve: Resolver = system_resolver, timeout: float = TIMEOUT
) -> WebhookClient:
    """The client of every attempt: no redirects, no proxies from the environment."""
    return WebhookClient(allow_private=allow_private, resolve=resolve, timeout=timeout)


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
        response = client.post(delivery.url, delivery.body, signed_headers(delivery, now))
        try:
            answer = _read_some(response, started)
        finally:
            response.close()
        seconds = time.monotonic() - started
        if seconds > TIMEOUT:
            return AttemptResult(None, f"timeout: answered after {seconds:.1f} s", seconds)
        return AttemptResult(response.status, answer, seconds)
    except UnsafeUrl as refused:
        return AttemptResult(None, f"refused: {refused}", time.monotonic() - started)
    except httpcore.TimeoutException as error:
        return AttemptResult(None, f"timeout: {type(error).__name__}", time.monotonic() - started)
    except NETWORK_ERRORS as error:
        why = f"{type(error).__name__}: {error}"
        return AttemptResult(None, why, time.monotonic() - started)


def _read_some(response: httpcore.Response, started: float) -> str:
    """At most :data:`MAX_ANSWER` bytes of the body, and none after the deadline."""
    kept = bytearray()
    for chunk in cast(Iterable[bytes], response.stream):
        kept += chunk
        if len(kept) >= MAX_ANSWER or time.monotonic() - started > TIMEOUT:
            break
    return bytes(kept[:MAX_ANSWER]).decode("utf-8", "replace")
