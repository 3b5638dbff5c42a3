"""Whether a request may leave is asked just before it is written, not before it
connects: a slow connect, or a wait for a connection, is never cut short by the
question (the requests of one perform_all asking at once ask in one call), while a
request the caller refuses is never written.

The slow connect is real: a listening socket whose accept queue is full drops the SYN,
and the client's kernel sends it again about a second later.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from providers.base import Call, Reply
from providers.http import LATE, Failure, HttpSettings, Transport


class SlowAcceptServer:
    """HTTP/1.1 on 127.0.0.1 that answers 200 to every request, but accepts nothing until
    :meth:`open`: its queue (backlog 0) is filled by one idle connection, so a client's
    connect waits for a SYN retransmission."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port))
        self.requests: list[bytes] = []
        self._stop = threading.Event()

    def open(self) -> None:
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
            except OSError:
                return
            self.requests.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self._stop.set()
        self.filler.close()
        self.sock.close()


@pytest.fixture
def server() -> Iterator[SlowAcceptServer]:
    box = SlowAcceptServer()
    try:
        yield box
    finally:
        box.close()


def _call(port: int, i: int) -> Call:
    return Call(method="GET", url=f"http://127.0.0.1:{port}/send/{i}")


class MayWrite:
    """The caller's side: each round of positions asked, a fixed answer, and the moment
    of each question."""

    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.rounds: list[list[int]] = []
        self.asked_at: list[float] = []

    def __call__(self, positions: Sequence[int]) -> list[bool]:
        self.rounds.append(list(positions))
        self.asked_at.append(time.monotonic())
        return [self.allow for _ in positions]


def test_a_slow_connect_is_asked_about_when_the_request_can_leave(
    server: SlowAcceptServer,
) -> None:
    """Connects take ~1 s (the SYN dropped once): the question comes once each request
    is connected and about to be written, not before (so the connect was never cut), and
    both are sent; each request is asked about once."""
    transport = Transport(HttpSettings(max_connections=4, pool_size=4, connect_timeout=5))
    may_write = MayWrite(allow=True)
    try:
        started = time.monotonic()
        threading.Timer(0.3, server.open).start()
        answers = transport.perform_all(
            [_call(server.port, 1), _call(server.port, 2)], may_write=may_write
        )
    finally:
        transport.close()
    assert all(isinstance(a, Reply) and a.status == 200 for a in answers), answers
    assert len(server.requests) == 2
    assert sorted(p for round_ in may_write.rounds for p in round_) == [0, 1]
    # asked only once connected: the server accepts nothing before it opens
    assert min(may_write.asked_at) >= started + 0.3


def test_a_request_the_caller_refuses_is_never_written(server: SlowAcceptServer) -> None:
    threading.Timer(0.3, server.open).start()
    transport = Transport(HttpSettings(max_connections=4, pool_size=4, connect_timeout=5))
    may_write = MayWrite(allow=False)
    try:
        (answer,) = transport.perform_all([_call(server.port, 1)], may_write=may_write)
    finally:
        transport.close()
    assert isinstance(answer, Failure) and (answer.kind, answer.sent) == (LATE, False)
    assert answer.late
    assert may_write.rounds == [[0]]
    # The transport is closed above: nothing more can be written. The pause only lets the
    # server's thread read what might already sit on the loopback socket, which takes
    # microseconds; it cannot make this test fail on a busy machine, only (at worst)
    # see a written request late.
    time.sleep(0.3)
    assert server.requests == []  # connected, maybe; never a byte of the request
