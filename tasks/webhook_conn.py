"""Where a webhook's connections come from: opened only to an address checked as it is
connected to, kept alive for the endpoint's next event, shared by a worker's threads.

- **Guarded.** A connection is opened through :func:`webhooks.guarded_address`: the host
  is resolved when connecting, every address it resolves to must be public unless the
  operator allows private ones, and the address checked is the one connected to, so a
  name that resolved to a public address at registration and to ``127.0.0.1`` now (DNS
  rebinding) is refused, not followed. TLS (``ssl.create_default_context()``) verifies
  the certificate against the URL's host, which it also names in SNI: only the TCP
  connect goes to the checked address.
- **Kept alive.** After an answer read to its end, a connection waits for the next
  request to the same scheme, host and port (the most recent first) for
  :data:`IDLE_EXPIRY` seconds; at most ``max_idle`` wait in all (the oldest closed
  first), and at most ``max_active`` carry a request at once (the others wait their
  turn within their deadline).
- **Retried once.** A receiver may close a kept connection at any moment while it
  waits; the request then fails to be written, or the connection ends before the
  answer's first byte. Such a request is sent once more, on a new connection, under
  the same deadline. Sending it twice is safe because webhooks are at least once by
  design: both carry the same ``webhook-id``, and a receiver drops an id it has seen.
  Nothing else is retried here (a timeout, or an answer cut short, is the attempt's
  result).
- **Bounded in time.** One deadline per request bounds the wait for a turn, the
  connect, the TLS handshake, the write and every read (:mod:`tasks.webhook_wire`).
"""

from __future__ import annotations

import functools
import re
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from tasks.webhook_wire import (
    Answer,
    ConnectError,
    ConnectTimeout,
    NoAnswer,
    PoolTimeout,
    WriteError,
    exchange,
    remaining,
)
from webhooks import UnsafeUrl, guarded_address
from webhooks.addresses import Resolver, system_resolver

#: seconds a kept connection waits for its next request
IDLE_EXPIRY = 5.0
#: a host name or address as it may go into ``host`` (an IPv6 zone after its ``%``)
_HOST = re.compile(r"[A-Za-z0-9._~:%-]+")
#: what may stay as it is in a request target (the rest is percent-encoded)
_TARGET_SAFE = "/%:@!$&'()*+,;=?~"

#: scheme, host (as resolved) and port: the connections a request may reuse
Origin = tuple[str, str, int]


class Target(NamedTuple):
    """An endpoint's URL, worked out once: where to connect, and the request's first
    bytes (request line and ``host``)."""

    origin: Origin
    head: bytes


@functools.lru_cache(maxsize=1024)
def target_of(url: str) -> Target:
    try:
        parts = urlsplit(url)
        explicit = parts.port
        host = parts.hostname or ""
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as error:
        raise UnsafeUrl(f"not a URL ({error})") from None
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host):
        raise UnsafeUrl("an http:// or https:// URL naming a host")
    port = explicit if explicit is not None else (443 if parts.scheme == "https" else 80)
    name = f"[{host}]" if ":" in host else host
    authority = name if explicit is None else f"{name}:{explicit}"
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    query = "?" + quote(parts.query, safe=_TARGET_SAFE) if parts.query else ""
    head = f"POST {path}{query} HTTP/1.1\r\nhost: {authority}\r\n".encode("ascii")
    return Target((parts.scheme, host, port), head)


class WebhookClient:
    """The keep-alive pool of a worker's webhook attempts (thread-safe)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float,
        keep: int,
        resolve: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 20,
        max_active: int = 100,
    ) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self.keep = keep
        self.resolve = resolve
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.max_idle = max_idle
        self.max_active = max_active
        self._lock = threading.Lock()
        #: signalled when a request ends while others wait for their turn
        self._turn_free = threading.Condition(self._lock)
        self._active = 0
        self._waiting = 0
        #: per origin, idle connections and when each was given back, oldest first
        self._idle: dict[Origin, list[tuple[float, socket.socket]]] = {}
        self._idle_count = 0
        self._swept = time.monotonic()
        self._closed = False

    def post(self, url: str, body: bytes, headers: Sequence[tuple[str, str]]) -> Answer:
        """POST ``body`` with ``headers`` (``content-length`` added) to ``url``: the
        answer, or an :class:`~tasks.webhook_wire.HttpError` or
        :class:`~webhooks.UnsafeUrl` saying why there is none."""
        deadline = time.monotonic() + self.timeout
        target = target_of(url)
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
        request = b"".join(
            (target.head, fields.encode("ascii"), b"content-length: %d\r\n\r\n" % len(body), body)
        )
        sock = self._take(target.origin, deadline)
        reusable = False
        try:
            if sock is not None:
                try:
                    answer, reusable = exchange(sock, request, deadline, keep=self.keep)
                    return answer
                except (WriteError, NoAnswer):
                    sock.close()  # closed by the receiver while it waited: once more, anew
                    sock = None
            sock = self._open(target.origin, deadline)
            answer, reusable = exchange(sock, request, deadline, keep=self.keep)
            return answer
        finally:
            if sock is not None and not reusable:
                sock.close()
                sock = None
            self._give_back(target.origin, sock)

    def _open(self, origin: Origin, deadline: float) -> socket.socket:
        scheme, host, port = origin
        address = guarded_address(
            host, port, allow_private=self.allow_private, resolve=self.resolve
        )
        try:
            sock = socket.create_connection(
                (address, port), timeout=remaining(deadline, ConnectTimeout)
            )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {address}:{port} in time") from None
        except OSError as error:
            raise ConnectError(str(error)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock.settimeout(remaining(deadline, ConnectTimeout))
                sock = self.ssl_context.wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            sock.close()
            raise ConnectTimeout(f"no TLS handshake with {host} in time") from None
        except OSError as error:
            sock.close()
            raise ConnectError(str(error)) from None
        except BaseException:
            sock.close()
            raise
        return sock

    def _take(self, origin: Origin, deadline: float) -> socket.socket | None:
        """A turn to send, waited for within the deadline; and the origin's most recently
        kept connection, if it has not expired."""
        now = time.monotonic()
        with self._lock:
            while self._active >= self.max_active:
                self._waiting += 1
                try:
                    self._turn_free.wait(remaining(deadline, PoolTimeout))
                finally:
                    self._waiting -= 1
            self._active += 1
            idle = self._idle.get(origin)
            if not idle:
                return None
            since, sock = idle.pop()
            self._idle_count -= 1
            if now - since < IDLE_EXPIRY:
                if not idle:
                    del self._idle[origin]
                return sock
            # the most recent expired, so did every older one
            expired = [sock, *(each for _, each in idle)]
            self._idle_count -= len(idle)
            del self._idle[origin]
        for each in expired:
            each.close()
        return None

    def _give_back(self, origin: Origin, sock: socket.socket | None) -> None:
        """The turn ended; ``sock`` (if not None) kept for the origin's next request."""
        now = time.monotonic()
        closing: list[socket.socket] = []
        with self._lock:
            self._active -= 1
            if self._waiting:
                self._turn_free.notify()
            if sock is None:
                return
            if self._closed:
                closing.append(sock)
            else:
                self._idle.setdefault(origin, []).append((now, sock))
                self._idle_count += 1
                if now - self._swept >= 1.0:
                    closing += self._sweep(now)
                while self._idle_count > self.max_idle:
                    closing.append(self._pop_oldest())
        for each in closing:
            each.close()

    def _sweep(self, now: float) -> list[socket.socket]:
        """Take out every expired connection (the lock held)."""
        self._swept = now
        expired: list[socket.socket] = []
        for origin, idle in list(self._idle.items()):
            fresh = [(since, sock) for since, sock in idle if now - since < IDLE_EXPIRY]
            if len(fresh) < len(idle):
                expired += [sock for since, sock in idle if now - since >= IDLE_EXPIRY]
                self._idle_count -= len(idle) - len(fresh)
                if fresh:
                    self._idle[origin] = fresh
                else:
                    del self._idle[origin]
        return expired

    def _pop_oldest(self) -> socket.socket:
        """Take out the connection idle the longest (the lock held)."""
        origin = min(self._idle, key=lambda each: self._idle[each][0][0])
        idle = self._idle[origin]
        _, sock = idle.pop(0)
        if not idle:
            del self._idle[origin]
        self._idle_count -= 1
        return sock

    def idle(self) -> int:
        """Connections kept for a next request now."""
        with self._lock:
            return self._idle_count

    def close(self) -> None:
        """Close every kept connection; those in use close when their answer is read."""
        with self._lock:
            self._closed = True
            kept = [sock for idle in self._idle.values() for _, sock in idle]
            self._idle.clear()
            self._idle_count = 0
        for sock in kept:
            sock.close()

    def __enter__(self) -> WebhookClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
