"""The sandbox's receipt pushes, each one POST over HTTP/1.1 on a kept-alive connection.

A provider pushes a receipt for every call it places, so during a campaign the sandbox
pushes hundreds a second to the API it shares the machine's cores with. Through httpx
those pushes took four fifths of the sandbox's CPU (``bench/api.py --e2e-only --py-spy
FILE --spy-on sandbox``): the connection pool scans every connection for expiry on each
request, through anyio's attribute lookups. That CPU is not the provider's to spend —
the real one runs on its own machines — and it was taken from the workers and the API
being measured. Here a push is one write of its head and body and a strict read of the
answer (status line, headers, a body by ``Content-Length``, chunked or to the close):
what a receiver of our tests or the API ever answers, nothing more.

Plain ``http`` only: the sandbox pushes to local receivers. A kept connection the
receiver closed while it waited fails before the answer's first byte; such a push goes
once more on a new connection (a receipt pushed twice is what the providers' retries
do anyway, and every receiver takes a repeat).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

#: the most of an answer's head or body kept (a receiver answers a word)
MOST = 64 * 1024


class PushError(Exception):
    """The push got no complete answer (refused, cut short, timed out, malformed)."""


class _Stale(Exception):
    """A kept connection ended before the answer's first byte."""


@dataclass(frozen=True)
class PushAnswer:
    status: int
    text: str


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class PushClient:
    """Receipt pushes to ``http://`` receivers, at most ``concurrency`` at once."""

    def __init__(self, timeout: float = 10.0, concurrency: int = 32) -> None:
        self.timeout = timeout
        self._turns = asyncio.Semaphore(concurrency)
        self._idle: dict[tuple[str, int], list[Connection]] = defaultdict(list)

    async def post(self, url: str, body: bytes, content_type: str) -> PushAnswer:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise PushError(f"the sandbox pushes to http:// receivers only, not {parts.scheme}")
        origin = (parts.hostname, parts.port or 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        async with self._turns:
            try:
                return await asyncio.wait_for(self._exchange(origin, head + body), self.timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                raise PushError(type(exc).__name__) from exc

    async def _exchange(self, origin: tuple[str, int], request: bytes) -> PushAnswer:
        idle = self._idle[origin]
        while idle:  # the most recently used first: the likeliest still open
            connection = idle.pop()
            try:
                return await self._on(connection, origin, request)
            except _Stale:
                continue
        connection = await asyncio.open_connection(*origin)
        try:
            return await self._on(connection, origin, request)
        except _Stale as exc:
            raise PushError("the receiver closed the connection without an answer") from exc

    async def _on(
        self, connection: Connection, origin: tuple[str, int], request: bytes
    ) -> PushAnswer:
        reader, writer = connection
        try:
            writer.write(request)
            await writer.drain()
            first = await reader.readline()
            if not first:
                raise _Stale
            answer, keep = await _read_answer(first, reader)
        except (ConnectionError, _Stale):
            writer.close()
            raise _Stale from None
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle[origin].append(connection)
        else:
            writer.close()
        return answer

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
        self._idle.clear()


async def _read_answer(first: bytes, reader: asyncio.StreamReader) -> tuple[PushAnswer, bool]:
    """The answer whose status line is ``first``, and whether its connection stays open."""
    version, status, *_ = first.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    size = len(first)
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        size += len(line)
        if size > MOST:
            raise ValueError("an answer's head over 64 KB")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _chunks(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:  # to the close
        body = b""
        while len(body) < MOST and (part := await reader.read(MOST - len(body))):
            body += part
        return PushAnswer(int(status), body.decode(errors="replace")), False
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    return PushAnswer(int(status), body.decode(errors="replace")), keep


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while size := int((await reader.readline()).split(b";")[0].strip() or b"0", 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
        if len(body) > MOST:
            raise ValueError("an answer's body over 64 KB")
    while await reader.readline() not in (b"\r\n", b"\n", b""):  # trailers
        pass
    return body
