"""HTTP/1.1 on one connection, as a webhook attempt needs it: a request written in one
``sendall``, its answer read back strictly, every step bounded by one deadline.

What the answer is read for: its status (``1xx`` answers skipped), and at most
``keep`` bytes of its body, framed by ``Content-Length``, ``chunked`` or the end of the
connection. What is not understood is an error, never a guess: a malformed status line,
header or chunk, a head over :data:`MAX_HEAD` bytes, ``101`` (nothing asked to switch).
:func:`exchange` also says whether the connection may carry another request: only when
the body was read to its end, nothing was sent beyond it, and neither an HTTP/1.0
answer nor ``Connection: close`` ended it.

Errors, drawn as httpx draws its own (names kept from httpcore, so the delivery log
reads as it did)::

    HttpError
     ├── Timeout            the deadline passed ("timeout: <name>" in the log)
     │    ├── ConnectTimeout
     │    ├── WriteTimeout
     │    ├── ReadTimeout
     │    └── PoolTimeout
     ├── ConnectError       no connection (refused, unreachable, TLS refused)
     ├── WriteError         the request could not be written
     ├── ReadError          the connection failed in the middle of the answer
     └── RemoteProtocolError   the answer is not HTTP/1.1 as read here
          └── NoAnswer      the connection ended before the answer's first byte

``WriteError`` and ``NoAnswer`` on a connection kept from an earlier request mean the
receiver had closed it meanwhile: the caller may send again on a new connection.
"""

from __future__ import annotations

import socket
import time
from typing import NamedTuple

#: bytes of an answer's head (status line and headers, 1xx heads included) read at most
MAX_HEAD = 64 * 1024
#: bytes asked of the socket at a time
RECV = 65536
_NO_BODY = frozenset({204, 304})
_HEX = frozenset(b"0123456789abcdefABCDEF")


class HttpError(Exception):
    """What a receiver or the network did to one request."""


class Timeout(HttpError):
    pass


class ConnectTimeout(Timeout):
    pass


class WriteTimeout(Timeout):
    pass


class ReadTimeout(Timeout):
    pass


class PoolTimeout(Timeout):
    pass


class ConnectError(HttpError):
    pass


class WriteError(HttpError):
    pass


class ReadError(HttpError):
    pass


class RemoteProtocolError(HttpError):
    pass


class NoAnswer(RemoteProtocolError):
    pass


class Answer(NamedTuple):
    """A final answer: its status and the start of its body (``keep`` bytes at most)."""

    status: int
    body: bytes


def remaining(deadline: float, timeout: type[Timeout]) -> float:
    """Seconds left until ``deadline``; ``timeout`` raised if none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise timeout("the deadline passed")
    return left


def exchange(
    sock: socket.socket, request: bytes, deadline: float, *, keep: int
) -> tuple[Answer, bool]:
    """Send ``request`` and read its answer: the answer, and whether ``sock`` may carry
    another request."""
    sock.settimeout(remaining(deadline, WriteTimeout))
    try:
        sock.sendall(request)
    except TimeoutError:
        raise WriteTimeout("the request was not written in time") from None
    except OSError as error:
        raise WriteError(str(error)) from None
    reader = _Reader(sock, deadline)
    while True:
        status, length, chunked, reusable = _head(reader)
        if status >= 200:
            break
        if status == 101:
            raise RemoteProtocolError("101 Switching Protocols, which nothing asked for")
    if status in _NO_BODY:
        body, complete = b"", True
    elif chunked:
        body, complete = _chunked(reader, keep)
    elif length is not None:
        body = reader.exactly(min(length, keep))
        complete = length <= keep
    else:
        body, complete = reader.until_closed(keep), False
    return Answer(status, body), reusable and complete and not reader.buffer


def _head(reader: _Reader) -> tuple[int, int | None, bool, bool]:
    """One answer's head: status, ``Content-Length`` (None when not given), whether the
    body is chunked, and whether the connection may stay open after it."""
    head = reader.head()
    crlf = head.count(b"\r\n")
    if head.count(b"\n") != crlf or head.count(b"\r") != crlf:
        raise RemoteProtocolError("a bare CR or LF in an answer's head")
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise RemoteProtocolError(f"not an HTTP/1.1 status line: {lines[0][:100]!r}")
    reusable = version == b"HTTP/1.1"
    length: int | None = None
    codings: list[bytes] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
            raise RemoteProtocolError(f"not a header line: {line[:100]!r}")
        name = name.lower()
        if name == b"content-length":
            length = _length(value, length)
        elif name == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",")]
        elif name == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            reusable = reusable and b"close" not in tokens
    chunked = bool(codings) and codings[-1] == b"chunked"
    if codings:
        # Transfer-Encoding frames the body whatever Content-Length says; a last coding
        # other than chunked is read to the end of the connection (RFC 9112, 6.3)
        reusable = reusable and chunked and length is None
        length = None
    return int(code), length, chunked, reusable


def _length(value: bytes, before: int | None) -> int:
    """A ``Content-Length`` value (``5`` or the same ``5, 5`` repeated), the same as any
    given before it."""
    values = {v.strip() for v in value.split(b",")}
    if len(values) != 1:
        raise RemoteProtocolError(f"Content-Length {value[:100]!r}")
    (digits,) = values
    if not digits.isdigit() or len(digits) > 18:
        raise RemoteProtocolError(f"Content-Length {value[:100]!r}")
    length = int(digits)
    if before is not None and before != length:
        raise RemoteProtocolError("two different Content-Length headers")
    return length


def _chunked(reader: _Reader, keep: int) -> tuple[bytes, bool]:
    """A chunked body: at most ``keep`` bytes of it, and whether it was read to its end
    (its last chunk and trailers)."""
    parts: list[bytes] = []
    room = keep
    while True:
        size_field = reader.line().partition(b";")[0].strip(b" \t")
        if not size_field or len(size_field) > 16 or not _HEX.issuperset(size_field):
            raise RemoteProtocolError(f"not a chunk size: {size_field[:100]!r}")
        size = int(size_field, 16)
        if size == 0:
            while reader.line():  # trailers, ignored
                pass
            return b"".join(parts), True
        if size > room:
            parts.append(reader.exactly(room))
            return b"".join(parts), False
        parts.append(reader.exactly(size))
        room -= size
        if reader.line():
            raise RemoteProtocolError("a chunk longer than its size")


class _Reader:
    """The bytes of one answer as they arrive, each wait for more bounded by the
    deadline; ``buffer`` holds what was received and not yet read."""

    __slots__ = ("buffer", "deadline", "head_bytes", "received", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""
        self.received = False
        self.head_bytes = 0

    def _more(self) -> bool:
        """Received more (True), or the connection ended (False)."""
        self.sock.settimeout(remaining(self.deadline, ReadTimeout))
        try:
            data = self.sock.recv(RECV)
        except TimeoutError:
            raise ReadTimeout("no answer in time") from None
        except OSError as error:
            if not self.received:
                raise NoAnswer(f"the connection failed before an answer: {error}") from None
            raise ReadError(str(error)) from None
        if not data:
            return False
        self.received = True
        self.buffer += data
        return True

    def head(self) -> bytes:
        """Bytes up to the blank line that ends a head."""
        scanned = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n", scanned)
            if end >= 0:
                self.head_bytes += end + 4
                if self.head_bytes > MAX_HEAD:
                    break
                head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                return head
            if self.head_bytes + len(self.buffer) > MAX_HEAD:
                break
            scanned = max(0, len(self.buffer) - 3)
            if not self._more():
                if not self.received:
                    raise NoAnswer("the connection ended before an answer")
                raise RemoteProtocolError("the connection ended in the middle of a head")
        raise RemoteProtocolError(f"an answer's head over {MAX_HEAD // 1024} KB")

    def line(self) -> bytes:
        """One line of a chunked body's framing, without its CRLF."""
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
                return line
            if len(self.buffer) > MAX_HEAD:
                raise RemoteProtocolError("a chunk's framing line too long")
            if not self._more():
                raise RemoteProtocolError("the connection ended in the middle of a chunk")

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._more():
                short = n - len(self.buffer)
                raise RemoteProtocolError(f"the connection ended {short} bytes short of the body")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def until_closed(self, keep: int) -> bytes:
        while len(self.buffer) < keep and self._more():
            pass
        data, self.buffer = self.buffer[:keep], b""
        return data
