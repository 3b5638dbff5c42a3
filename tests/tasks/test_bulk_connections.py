"""Bulk calls hold at most their share of a process's provider connections
(providers/http.py): with every connection bulk may take held open by a slow provider,
a code's call still gets a connection at once, through real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from providers.base import Call, Reply
from providers.http import HttpSettings, Transport
from tests.services import serve_http, stop_http


class HoldingServer:
    """Answers ``/code`` at once; holds every ``/bulk`` request until :attr:`release`
    is set, counting how many are open together."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.changed = threading.Condition()
        self.open_bulk = 0
        self.most_bulk = 0
        box = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.startswith("/bulk"):
                    with box.changed:
                        box.open_bulk += 1
                        box.most_bulk = max(box.most_bulk, box.open_bulk)
                        box.changed.notify_all()
                    box.release.wait(30)
                    with box.changed:
                        box.open_bulk -= 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: object) -> None:
                pass

        self.server, self.url = serve_http(Handler)

    def wait_open(self, n: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.open_bulk >= n, timeout=10)


@pytest.fixture
def server() -> Iterator[HoldingServer]:
    box = HoldingServer()
    yield box
    box.release.set()
    stop_http(box.server)


def test_a_code_gets_a_connection_while_bulk_holds_all_it_may(server: HoldingServer) -> None:
    # five connections, bulk may hold four; a call waits at most 3 s for one
    transport = Transport(
        HttpSettings(max_connections=5, pool_size=5, pool_timeout=3.0, bulk_share=0.8)
    )
    try:
        bulk_answers: list[object] = []
        campaign = threading.Thread(
            target=lambda: bulk_answers.extend(
                transport.perform_all(
                    [Call("GET", f"{server.url}/bulk/{i}") for i in range(10)], bulk=True
                )
            )
        )
        campaign.start()
        assert server.wait_open(4)
        code = transport.perform(Call("GET", f"{server.url}/code"))
        assert isinstance(code, Reply) and code.status == 200, code
        assert server.open_bulk == 4  # the campaign's calls still held: the code went beside them
        server.release.set()
        campaign.join(30)
        assert len(bulk_answers) == 10 and all(isinstance(a, Reply) for a in bulk_answers)
        assert server.most_bulk == 4
    finally:
        transport.close()
