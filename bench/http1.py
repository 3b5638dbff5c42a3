"""A load generator's HTTP/1.1 client: JSON posts on one kept-alive connection.

On a 2-core machine the load generator shares the cores with the system it measures.
``httpx.AsyncClient`` spends about a millisecond of CPU a request (URL parsing, header
models, its connection pool, anyio): with 16 clients that was a third of a core taken
from the API and the workers (``bench/api.py``, measured with ``/proc`` CPU times).
This client writes the request bytes itself and reads the status line, the headers and
a ``Content-Length`` body — all a load generator needs, as wrk does — so what is
measured is the server, not the client.

It speaks only what our API answers: ``Content-Length`` bodies (no chunked transfer),
keep-alive. Anything else is an error, never a silent mis-read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class ProtocolError(RuntimeError):
    """The server answered something this client does not read."""


class JsonPoster:
    """``await post(path, body)`` → (status, body bytes), one request at a time."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http://host:port only, not {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        fixed = {"Host": f"{self._host}:{self._port}", "Content-Type": "application/json"}
        self._head = "".join(f"{k}: {v}\r\n" for k, v in {**fixed, **headers}.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> JsonPoster:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def post(self, path: str, body: Any) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None, "use it in async with"
        payload = json.dumps(body, ensure_ascii=False).encode()
        request = f"POST {path} HTTP/1.1\r\n{self._head}Content-Length: {len(payload)}\r\n\r\n"
        self._writer.write(request.encode() + payload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        length = None
        for line in lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                raise ProtocolError(f"{path}: transfer-encoding {value.strip()} not read here")
        if length is None:
            raise ProtocolError(f"{path}: an answer without Content-Length")
        return status, await self._reader.readexactly(length)
