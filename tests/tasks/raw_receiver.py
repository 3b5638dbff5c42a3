"""A webhook receiver that answers in raw bytes, for the tests of our HTTP/1.1 client:
whatever framing, head or misbehaviour a test needs, on a real loopback socket."""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Callable

from store.deliveries import Delivery

#: what to write for the request of this index (0, 1, … over all connections), and
#: whether to close the connection after it (without saying so)
Script = Callable[[int], tuple[bytes, bool]]
_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


def no_content(_: int) -> tuple[bytes, bool]:
    return b"HTTP/1.1 204 No Content\r\n\r\n", False


class RawReceiver:
    """Reads each request (its head and its ``Content-Length`` body) and writes what
    ``script`` says; counts the connections it accepted and keeps every request."""

    def __init__(self, script: Script = no_content, *, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        #: the names clients asked for in TLS's SNI
        self.server_names: list[str | None] = []
        #: released once per connection this side has closed
        self.hung_up = threading.Semaphore(0)
        self.lock = threading.Lock()
        if tls is not None:
            tls.sni_callback = self._sni
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}/hooks?to=orders"

    def _sni(self, _sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        with self.lock:
            self.server_names.append(name)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self._converse(conn)
        except OSError:
            pass
        finally:
            conn.close()
            self.hung_up.release()

    def _converse(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            found = _LENGTH.search(head)
            length = int(found.group(1)) if found else 0
            while len(buffer) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            body, buffer = buffer[:length], buffer[length:]
            with self.lock:
                index = len(self.requests)
                self.requests.append(head + b"\r\n\r\n" + body)
            answer, close = self.script(index)
            conn.sendall(answer)
            if close:
                return

    def close(self) -> None:
        self.listener.close()


def delivery_to(url: str, message_id: str = "msg_raw") -> Delivery:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    return Delivery(1, 1, message_id, b'{"type":"notification.sent"}', 0, url, (secret,))
