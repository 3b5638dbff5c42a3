"""A webhook receiver for the tests and the benchmark: an HTTP server on a loopback
port that keeps every POST it is sent and answers what it is told to. It can close its
port and open it again on the same one (a receiver that is down for a while).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


#: what the receiver answers a request with (an HTTP status)
Answer = Callable[[Received], int]


class WebhookReceiver:
    def __init__(self, answer: Answer | None = None, *, port: int = 0) -> None:
        self.answer: Answer = answer or (lambda _: 204)
        self.received: list[Received] = []
        #: sent with every answer (a ``location`` makes a redirect of a 3xx)
        self.headers: dict[str, str] = {}
        self.port = port
        #: requests being answered now (read, not yet answered)
        self.in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/notifyq"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                got = Received(
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.time(),
                )
                with receiver._lock:
                    receiver.received.append(got)
                    receiver.in_flight += 1
                try:
                    status = receiver.answer(got)
                    self.send_response(status)
                    for name, value in receiver.headers.items():
                        self.send_header(name, value)
                    body = b"" if status in (204, 304) or status < 200 else b"ok"
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender is gone (a worker killed mid-request)
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def log_message(self, *_: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port and every connection kept alive: connections are refused until
        :meth:`start` opens it again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections.clear()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)
