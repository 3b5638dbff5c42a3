"""The sandbox's push client against real receivers on loopback: what it writes, how it
reads each way an answer may end, and a kept connection the receiver closed meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from sandbox.push_client import PushClient, PushError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


async def serving(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/callbacks/t/ihuyi/receipt?x=1"


def test_a_form_goes_out_whole_and_the_connection_is_kept_for_the_next() -> None:
    seen: list[tuple[bytes, bytes]] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
            await writer.drain()

    async def run() -> list[str]:
        server, url = await serving(handler)
        client = PushClient(timeout=5)
        async with server:
            answers = [
                await client.post(url, b"a=1&b=%E4%B8%AD", "application/x-www-form-urlencoded")
                for _ in range(3)
            ]
            await client.aclose()
        return [f"{a.status} {a.text}" for a in answers]

    assert asyncio.run(run()) == ["200 success"] * 3
    assert connections == 1
    head, body = seen[0]
    assert head.startswith(b"POST /callbacks/t/ihuyi/receipt?x=1 HTTP/1.1\r\n")
    assert b"Content-Type: application/x-www-form-urlencoded\r\n" in head
    assert body == b"a=1&b=%E4%B8%AD"


@pytest.mark.parametrize(
    "answer, text",
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsuc\r\n4\r\ncess\r\n0\r\n\r\n",
            "success",
        ),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "ok"),
        (b"HTTP/1.0 500 Oops\r\n\r\nbroken", "broken"),
    ],
    ids=["chunked", "content-length-then-close", "to-the-close"],
)
def test_every_way_an_answer_may_end_is_read(answer: bytes, text: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        if b"chunked" not in answer:
            writer.close()

    async def run() -> str:
        server, url = await serving(handler)
        async with server:
            got = await PushClient(timeout=5).post(url, b"{}", "application/json")
        return got.text

    assert asyncio.run(run()) == text


def test_a_kept_connection_closed_by_the_receiver_is_replaced_not_failed() -> None:
    """The receiver answers and then closes every connection (as one whose keep-alive
    ran out does): the next push finds its kept connection dead before any answer and
    goes on a new one."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
        await writer.drain()
        writer.close()

    async def run() -> list[str]:
        server, url = await serving(handler)
        client = PushClient(timeout=5)
        async with server:
            first = await client.post(url, b"a=1", "application/x-www-form-urlencoded")
            await asyncio.sleep(0)  # the close reaches the client's side
            second = await client.post(url, b"a=2", "application/x-www-form-urlencoded")
        return [first.text, second.text]

    assert asyncio.run(run()) == ["success", "success"]
    assert connections == 2


def test_no_receiver_a_silent_one_and_https_are_push_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1)

    async def run() -> list[str]:
        errors = []
        server, url = await serving(silent)
        async with server:
            for target, timeout in (
                (url, 0.3),
                ("http://127.0.0.1:1/x", 5),
                ("https://example.com/x", 5),
            ):
                try:
                    await PushClient(timeout=timeout).post(target, b"", "text/plain")
                except PushError as exc:
                    errors.append(str(exc))
        return errors

    errors = asyncio.run(run())
    assert len(errors) == 3
    assert errors[0] == "TimeoutError" and "ConnectionRefused" in errors[1] and "https" in errors[2]
