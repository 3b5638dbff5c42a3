"""A client that sends a body over the limit reads its 413 — every time, over a raw socket
to the real API process (uvicorn): the server answers, then reads and discards the rest
of the body (up to a bound) before it closes, so the close never meets unread bytes and
resets the connection under the client's feet."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TEST_CREDENTIALS, System, own_system

KEY = TEST_CREDENTIALS["NOTIFYQ_API_KEYS"].split(",")[0]
BODY = b"x" * (3 * 1024 * 1024)  # three times NOTIFYQ_API_MAX_BYTES' default


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with own_system(tmp_path_factory.mktemp("oversized")) as system:
        with system.stack.together():
            system.stack.api(system.api_port)
        yield system


def exchange(system: System, head: bytes, body: Any) -> bytes:
    """Send ``head`` and then ``body`` (bytes, or chunks for a chunked body) as a client
    that writes its whole request before it reads; the answer, to the server's close."""
    with socket.create_connection(("127.0.0.1", system.api_port), timeout=60) as sock:
        sock.sendall(head)
        for piece in [body] if isinstance(body, bytes) else body:
            sock.sendall(piece)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def request_head(system: System, extra: str) -> bytes:
    return (
        f"POST /v1/notifications HTTP/1.1\r\nHost: 127.0.0.1:{system.api_port}\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_3_mb_body_reads_its_413_fifty_times_in_a_row(api: System) -> None:
    head = request_head(api, f"Content-Length: {len(BODY)}\r\n")
    for turn in range(50):
        answer = exchange(api, head, BODY)
        assert answer.startswith(b"HTTP/1.1 413 "), (turn, answer[:200])
        assert b"larger than" in answer


def test_a_chunked_3_mb_body_reads_its_413_too(api: System) -> None:
    head = request_head(api, "Transfer-Encoding: chunked\r\n")
    piece = 64 * 1024
    chunks = [
        f"{piece:x}\r\n".encode() + BODY[i : i + piece] + b"\r\n"
        for i in range(0, len(BODY), piece)
    ] + [b"0\r\n\r\n"]
    for turn in range(5):
        answer = exchange(api, head, chunks)
        assert answer.startswith(b"HTTP/1.1 413 "), (turn, answer[:200])
