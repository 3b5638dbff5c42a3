"""What status webhooks cost dispatch, and how fast events reach a receiver.

One machine, one private Redis, a fresh store (SQLite, or PostgreSQL with ``--database-
url``), the sandbox answering every call after ``--latency-ms``, two workers, and a
receiver in this process: a bare asyncio HTTP/1.1 responder on loopback that reads each
POST and answers 204 at once. It stands for a service on another machine, so it is kept
as lean as can be: the standard library's http.server (the tests' receiver) spends 0.15
ms of CPU a request to this one's 0.05 ms (beside the sender's 0.35 ms), and on this
2-core machine that would be billed to notifyq. Beat's parts here run in this process
instead, every second as beat would: the webhook pump (``hand_out_due``), so it can be
held back, and the release of deferred notifications (a send found late on a busy
machine is deferred, and without it would never be sent). The machine's speed drifts
from one minute to the next, so two phases take turns, ``--rounds`` times each, in the
same order:

- ``none``: N notifications enqueued for a key with no webhook endpoint;
- ``one``:  the same for a key with one endpoint registered, so every ``sent`` writes
  an event in its transaction and the workers deliver the events while they dispatch;
- ``held``: as ``one``, the pump held back until every notification is ``sent``: what
  writing the events costs dispatch, apart from what delivering them does.

Dispatch sends/s is N over the time from the first enqueue to the last ``sent``. Each
phase starts once the previous one's events are all delivered. On a machine others
share, sends/s swings with their load; the workers' CPU a notification (user and system
time of the worker processes, from the first enqueue until the phase's last ``sent`` and
its last event delivered, less what idle workers burn in that time) does not, and its ratio is what dispatch keeps
when the workers are what limits it. Then, on its own:

- ``drain``: N events made with the pump held back, then released at once: events
  delivered/s is N over the time from the release to the last delivered.

Prints a table, then as its last line one JSON object:
``{"sends_per_s_none", "sends_per_s_one", "one_vs_none", "events_per_s", ...}``.

    python bench/webhooks.py            # 3,000 notifications a phase, 3 rounds
    python bench/webhooks.py --quick    # 1,000 a phase, 2 rounds
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bench.run import bench_parser, private_redis  # noqa: E402
from bench.store import fresh_database, kind  # noqa: E402
from config.settings import Settings  # noqa: E402
from harness.supervise import Stack, free_port, wait_until  # noqa: E402
from store.schema import Event, WebhookDelivery  # noqa: E402
from store.webhooks import EndpointStore  # noqa: E402
from tasks.enqueue import enqueue_many  # noqa: E402
from tasks.maintenance import release  # noqa: E402
from tasks.requests import SendRequest  # noqa: E402
from tasks.runtime import Runtime  # noqa: E402
from tasks.webhooks import hand_out_due  # noqa: E402

OWNER = "bench"
E, D = Event.__table__, WebhookDelivery.__table__


class LeanReceiver:
    """Answers every POST 204, keeping the connection alive; counts what it got."""

    def __init__(self) -> None:
        self.posts = 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", self.port)
        )
        ready.set()
        with contextlib.suppress(RuntimeError):
            self.loop.run_until_complete(server.serve_forever())

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                self.posts += 1
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def last_sent(runtime: Runtime, first_id: int, n: int) -> float | None:
    """When the last of ids ``first_id``… became ``sent``, once all ``n`` are."""
    with runtime.db.read() as conn:
        count, last = conn.execute(
            select(func.count(), func.max(E.c.at)).where(
                E.c.notification_id >= first_id, E.c.to_status == "sent"
            )
        ).one()
    return last if count >= n else None


def events_done(runtime: Runtime, endpoint_id: int, n: int) -> tuple[float, float] | None:
    """(first event made, last delivered) once all ``n`` are delivered."""
    with runtime.db.read() as conn:
        count, first, last = conn.execute(
            select(func.count(), func.min(D.c.created_at), func.max(D.c.delivered_at)).where(
                D.c.endpoint_id == endpoint_id, D.c.status == "delivered"
            )
        ).one()
    return (first, last) if count >= n else None


class Pump:
    """Beat's webhook pump, in this process: ``hand_out_due`` every second while on; and
    the deferred notifications released every second, on or not."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.on = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(1.0):
            release(self.runtime)
            if self.on.is_set():
                hand_out_due(self.runtime)

    def release(self) -> float:
        """On now, handing out at once: the moment it started."""
        started = time.time()
        hand_out_due(self.runtime)
        self.on.set()
        return started


def send(runtime: Runtime, n: int, offset: int) -> float:
    """Enqueue N for the bench's key; the seconds until the last of them is ``sent``."""
    requests = [
        SendRequest(
            provider="ihuyi", to=f"139{offset + i:08d}", content="您的订单已发货。", owner=OWNER
        )
        for i in range(n)
    ]
    started = time.time()
    made = []
    for chunk in range(0, n, 1000):
        made += enqueue_many(requests[chunk : chunk + 1000], runtime=runtime)
    first_id = min(m.id for m in made)  # type: ignore[union-attr]
    last = wait_until(lambda: last_sent(runtime, first_id, n), 900, 0.5, f"{n} sent")
    return last - started


def workers_cpu(stack: Stack) -> float:
    """CPU seconds (user and system) the worker processes and their children used so far."""
    groups = {p.process.pid for p in stack.procs if p.name.startswith("worker")}
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # its process group: a worker's
            total += int(fields[11]) + int(fields[12])
    return total / tick


#: the workers' CPU seconds a second when they have nothing to do (Celery's own upkeep),
#: taken from each phase's figure so a longer phase is not billed for waiting
IDLE = [0.0]


def idle_rate(stack: Stack, seconds: float = 5.0) -> float:
    cpu = workers_cpu(stack)
    time.sleep(seconds)
    return (workers_cpu(stack) - cpu) / seconds


def phase(
    runtime: Runtime,
    stack: Stack,
    pump: Pump,
    name: str,
    n: int,
    offset: int,
    receiver: LeanReceiver,
) -> tuple[float, float]:
    """A dispatch turn: its seconds, and the workers' CPU seconds for it; its events (if
    any) all delivered before it returns."""
    cpu, started = workers_cpu(stack), time.time()
    if name == "none":
        seconds = send(runtime, n, offset)
        return seconds, workers_cpu(stack) - cpu - IDLE[0] * (time.time() - started)
    endpoint_id = EndpointStore(runtime.db).create(OWNER, receiver.url)[0].id
    if name == "held":
        pump.on.clear()
    seconds = send(runtime, n, offset)
    pump.release()
    wait_until(lambda: events_done(runtime, endpoint_id, n), 900, 0.2, "the events delivered")
    used = workers_cpu(stack) - cpu - IDLE[0] * (time.time() - started)
    EndpointStore(runtime.db).delete(endpoint_id, None)
    return seconds, used


def drain(runtime: Runtime, pump: Pump, n: int, offset: int, receiver: LeanReceiver) -> float:
    """Events delivered a second: N made with the pump off, then released at once."""
    endpoint_id = EndpointStore(runtime.db).create(OWNER, receiver.url)[0].id
    pump.on.clear()
    send(runtime, n, offset)
    released = pump.release()
    _, last = wait_until(
        lambda: events_done(runtime, endpoint_id, n), 900, 0.2, "the events delivered"
    )
    return n / (last - released)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 a phase, 2 rounds")
    parser.add_argument("-n", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server")
    args = parser.parse_args()
    n = args.n or (1000 if args.quick else 3000)
    rounds = args.rounds or (2 if args.quick else 3)

    with private_redis("nq-bench-webhooks-", appendfsync=None) as (directory, server):
        receiver = LeanReceiver()
        sandbox_port = free_port()
        try:
            with fresh_database(args.database_url, directory, "webhooks") as database_url:
                env = {
                    "NOTIFYQ_REDIS_URL": server.url,
                    "NOTIFYQ_DATABASE_URL": database_url,
                    "NOTIFYQ_IHUYI_ACCOUNT": "bench",
                    "NOTIFYQ_IHUYI_APIKEY": "bench-apikey",
                    "NOTIFYQ_IHUYI_BASE_URL": f"http://127.0.0.1:{sandbox_port}",
                    "NOTIFYQ_IHUYI_CAPS": "",
                    "NOTIFYQ_WORKER_CONCURRENCY": str(args.concurrency),
                    "NOTIFYQ_WORKER_METRICS_PORT": "0",
                    "NOTIFYQ_SWEEP_GRACE": "900",
                    "NOTIFYQ_SENDING_TIMEOUT": "900",
                    "NOTIFYQ_WEBHOOK_ALLOW_PRIVATE": "true",
                    "NOTIFYQ_TASK_LOG_LEVEL": "WARNING",
                    "PYTHONPATH": str(ROOT),
                }
                stack = Stack(directory, env)
                with stack.together():
                    stack.sandbox(sandbox_port, "--latency-ms", str(args.latency_ms))
                    for i in range(args.workers):
                        stack.worker(name=f"worker{i}")
                values = {k.removeprefix("NOTIFYQ_").lower(): v for k, v in env.items()}
                values.pop("pythonpath", None)
                runtime = Runtime.build(Settings(_env_file=None, **values))  # type: ignore[call-arg]
                pump = Pump(runtime)
                pump.on.set()
                IDLE[0] = idle_rate(stack)
                turns: dict[str, list[tuple[float, float]]] = {"none": [], "one": [], "held": []}
                offset = 0
                try:
                    for _ in range(rounds):
                        for name, times in turns.items():
                            times.append(phase(runtime, stack, pump, name, n, offset, receiver))
                            offset += n
                    events = drain(runtime, pump, n, offset, receiver)
                finally:
                    pump.stopped.set()
                    runtime.close()
                    stack.stop()
        finally:
            receiver.stop()

    def rate(name: str) -> float:
        """Over every turn of the phase: all it sent over all the time it took."""
        return n * len(turns[name]) / sum(seconds for seconds, _ in turns[name])

    def cpu_ms(name: str) -> float:
        """The workers' CPU milliseconds a notification, over every turn of the phase."""
        return 1000 * sum(cpu for _, cpu in turns[name]) / (n * len(turns[name]))

    none, one, held = rate("none"), rate("one"), rate("held")
    print(f"store {kind(args.database_url)}, {n} notifications a phase, {rounds} rounds")
    print(f"workers idle: {IDLE[0] * 1000:.0f} ms of CPU a second (taken off each phase)")
    print(f"{'phase':<28}{'sends/s':>10}{'CPU ms/sent':>13}   sends/s each turn")
    labels = {
        "none": "no endpoint",
        "one": "one endpoint registered",
        "held": "one, delivered after",
    }
    for name, label in labels.items():
        each = ", ".join(f"{n / seconds:.0f}" for seconds, _ in turns[name])
        print(f"{label:<28}{rate(name):>10.0f}{cpu_ms(name):>13.2f}   {each}")
    print(
        f"one vs none: {one / none:.2f} in sends/s, {cpu_ms('none') / cpu_ms('one'):.2f} in "
        f"workers' CPU a notification; events delivered/s to the receiver: {events:.0f}"
    )
    print(
        json.dumps(
            {
                "store": kind(args.database_url),
                "n": n,
                "rounds": rounds,
                "sends_per_s_none": round(none, 1),
                "sends_per_s_one": round(one, 1),
                "one_vs_none": round(one / none, 3),
                "workers_idle_cpu_per_s": round(IDLE[0], 4),
                "cpu_ms_none": round(cpu_ms("none"), 3),
                "cpu_ms_one": round(cpu_ms("one"), 3),
                "cpu_none_vs_one": round(cpu_ms("none") / cpu_ms("one"), 3),
                "sends_per_s_held": round(held, 1),
                "held_vs_none": round(held / none, 3),
                "events_per_s": round(events, 1),
                "receiver_posts": receiver.posts,
            }
        )
    )


if __name__ == "__main__":
    main()
