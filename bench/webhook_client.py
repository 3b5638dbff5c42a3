"""What one webhook POST costs the sending thread in CPU: our HTTP/1.1 client
(tasks/webhook_conn.py) against httpcore, the engine it replaces.

A receiver in a process of its own (a bare asyncio responder answering every POST 204 on
a kept-alive connection) so that only the sender's work is counted; each client sends
``--posts`` POSTs of a 400-byte body with the headers an attempt sends, one after
another on one connection, and its thread's user and system time
(``RUSAGE_THREAD``) is divided by the count. The clients take turns ``--rounds``
times (the machine's speed drifts), and each one's best round is kept.

- ``httpcore``: ``httpcore.ConnectionPool.handle_request`` on a prepared URL, the body
  read and the answer closed (what the attempt did before);
- ``ours``: ``WebhookClient.post``;
- ``attempt``: ``tasks.webhook_http.attempt`` on ours, its signing included.

Prints a line per client, then as its last line one JSON object:
``{"httpcore_us", "ours_us", "attempt_us", "ours_vs_httpcore"}``.

    python bench/webhook_client.py [--posts 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpcore  # noqa: E402

from store.deliveries import Delivery  # noqa: E402
from tasks.webhook_http import attempt, signed_headers, webhook_client  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105  (the bench's own)


def respond(port_to: Connection) -> None:
    """The receiver: reads each POST and answers 204 at once, keeping the connection."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(connection, "127.0.0.1", 0)
        port_to.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def per_post(send: Callable[[], None], posts: int) -> float:
    """µs of this thread's CPU a POST."""
    send()  # the connection opened before the count starts
    started = thread_cpu()
    for _ in range(posts):
        send()
    return (thread_cpu() - started) / posts * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    ours_end, theirs_end = multiprocessing.Pipe()
    receiver = multiprocessing.Process(target=respond, args=(theirs_end,), daemon=True)
    receiver.start()
    port = ours_end.recv()
    url = f"http://127.0.0.1:{port}/hooks/notifyq"
    body = b'{"type":"notification.sent","data":"' + b"a" * 370 + b'"}'
    delivery = Delivery(1, 1, "msg_2Yc9KkqxRzYH5vJ1bQm3wAfT", body, 0, url, (SECRET,))
    headers = signed_headers(delivery, 1_790_000_000)

    pool = httpcore.ConnectionPool(max_keepalive_connections=20, keepalive_expiry=5.0)
    target = httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=port, target=b"/hooks/notifyq")
    fields = [("host", f"127.0.0.1:{port}"), ("content-length", str(len(body))), *headers]

    def httpcore_post() -> None:
        response = pool.handle_request(
            httpcore.Request(b"POST", target, headers=fields, content=body)
        )
        try:
            for _ in response.stream:  # type: ignore[union-attr]
                pass
        finally:
            response.close()
        assert response.status == 204

    client = webhook_client(allow_private=True)

    def ours_post() -> None:
        assert client.post(url, body, headers).status == 204

    def ours_attempt() -> None:
        assert attempt(client, delivery).status_code == 204

    clients = {"httpcore": httpcore_post, "ours": ours_post, "attempt": ours_attempt}
    best: dict[str, float] = {}
    try:
        for round_ in range(args.rounds):
            for name, send in clients.items():
                cost = per_post(send, args.posts)
                best[name] = min(best.get(name, cost), cost)
                print(f"round {round_ + 1}  {name:9} {cost:7.1f} µs of CPU a POST")
    finally:
        pool.close()
        client.close()
        receiver.terminate()
        receiver.join(5)
    for name, cost in best.items():
        print(f"best      {name:9} {cost:7.1f} µs")
    print(
        json.dumps(
            {
                "httpcore_us": round(best["httpcore"], 1),
                "ours_us": round(best["ours"], 1),
                "attempt_us": round(best["attempt"], 1),
                "ours_vs_httpcore": round(best["ours"] / best["httpcore"], 3),
                "posts": args.posts,
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
