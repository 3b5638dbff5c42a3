"""Enqueue throughput of the HTTP API: single posts against batches, in one run.

One machine, one private Redis, SQLite (the default store; PostgreSQL with
``--database-url``, a fresh database each phase), the real ``notifyq api`` process
(uvicorn) over real HTTP. This process drives it with a lean HTTP/1.1 client
(bench/http1.py), ``--concurrency`` requests in flight:

(a) single  ``POST /v1/notifications``, one notification per request, distinct numbers;
(b) batch   ``POST /v1/notifications:batch``, ``--batch-size`` (100) per request;
            both with no worker running, so the dispatch messages just accumulate in
            the broker: the API's own capacity;
(c) ceiling bare Celery sleep tasks on the same workers (bench/dispatch.py's ceiling),
            measured before (d) and again after it: the ratio is to their mean;
(d) end to end: single posts from ``--e2e-clients`` (16) clients while two workers and
            beat run and the sandbox answers after 200 ms, timed from the first post to
            the last notification stored ``sent`` — what a user of the HTTP API sees.
            As the real ihuyi does, the sandbox pushes a receipt to the API's
            ``/callbacks/{token}/ihuyi/receipt`` for every call, ``--receipt-delay``
            (0.5 s) after it: a second request and a second write per notification,
            on the same cores (``--no-receipts`` turns the pushes off). Two times are
            reported: *sent* (the figure compared with the ceiling: the last call
            placed) and *receipted* — the bench waits until every notification holds
            its receipt's final status (``delivered``), and times that too. Beside
            them: the pushes not answered ``success``, the warnings the stack logged,
            and each process's CPU seconds during (d) (API, sandbox, workers, beat,
            this client) — on a shared machine, where the CPU goes is steadier than
            how fast it went.

Each request is validated and stored (committed) before it is answered, its id then
published in one dispatch message with the others of its ``NOTIFYQ_PUBLISH_LINGER``
(api/coalesce.py), so a figure here is *accepted and durable* per second. The issue names no baseline for
the API, so the two are compared with each other. The client shares the machine's
cores with the server; it is kept lean (bench/http1.py) so that its CPU is not what
is measured.

At the end every notification is checked to be in the ledger once, ``queued``, and in
a dispatch message in the broker.

Prints a table, then as its last line one JSON object:
``{"enqueue_rps", "p50_ms", "p99_ms", "batch_items_per_s", "batch_p99_ms", ...}``.

    python bench/api.py            # 20,000 single posts, 300 batches of 100
    python bench/api.py --quick    # 2,000 and 40: the same figures in under 30 s
    python bench/api.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/api.py --py-spy var/api.svg   # and a flame graph of the API process
    python bench/api.py --py-spy var/api.txt   # or its collapsed stacks
    python bench/api.py --e2e-only --quick     # (c) and (d) alone
    python bench/api.py --e2e-only --py-spy var/e2e.txt   # the API's stacks during (d)
    python bench/api.py --e2e-only --py-spy var/sbx.txt --spy-on sandbox   # the sandbox's
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import create_engine, func, select  # noqa: E402

from bench.dispatch import base_env, bracket, ceiling  # noqa: E402
from bench.http1 import JsonPoster  # noqa: E402
from bench.run import private_redis  # noqa: E402
from bench.store import add_database_url, fresh_database  # noqa: E402
from bench.store import kind as store_kind  # noqa: E402
from harness.signals import install_sigterm_as_interrupt  # noqa: E402
from harness.supervise import Stack, free_port, wait_until  # noqa: E402
from store.schema import Event, Notification  # noqa: E402
from worker.queues import DISPATCH_QUEUE  # noqa: E402

KEY = "bench-api-key-3c1d"
TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"
PY_SPY = str(Path(sys.executable).with_name("py-spy"))
#: samples only while the GIL is held: where the CPU goes, not where threads wait
SPY_FLAGS = ("-r", "200", "--gil", "-f")


@dataclass
class Phase:
    """What one kind of request did: how many, how long, each request's latency."""

    name: str
    requests: int
    items: int
    seconds: float
    latencies: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds


#: the callback token of the bench's API: the sandbox pushes receipts behind it
CALLBACK_TOKEN = "bench-callback-token-7f2e"  # noqa: S105 - a private test stack's
#: the statuses a receipt moves a notification to
FINAL = ("delivered", "undelivered")


def spy_on(pid: int, path: str | None) -> subprocess.Popen[bytes] | None:
    """py-spy recording process ``pid`` into ``path`` (``.txt``: collapsed stacks; else
    a flame graph), or None without a path."""
    if path is None:
        return None
    kind = "raw" if path.endswith(".txt") else "flamegraph"
    return subprocess.Popen(
        [PY_SPY, "record", "-p", str(pid), "-o", path, *SPY_FLAGS, kind],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    """SIGINT: py-spy writes its file and exits."""
    if spy is not None and spy.poll() is None:
        spy.send_signal(2)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()


class Spy:
    """The py-spy of one run, if the command line asks for one."""

    process: subprocess.Popen[bytes] | None = None

    def on(self, pid: int, path: str | None) -> None:
        self.process = spy_on(pid, path)

    def stop(self) -> None:
        stop_spy(self.process)


@contextlib.contextmanager
def stack_run(stack: Stack) -> Iterator[Spy]:
    """A run of ``stack``: on a failure, what each process said; however it ends, a
    py-spy still recording is killed and the stack stopped."""
    spy = Spy()
    try:
        yield spy
    except Exception:
        print(stack.report(), file=sys.stderr)
        raise
    finally:
        if spy.process is not None and spy.process.poll() is None:
            spy.process.kill()
        stack.stop()


def cpu_seconds(pid: int) -> float:
    """User and system CPU of process ``pid`` so far (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_process(stack: Stack, redis_url: str) -> dict[str, float]:
    """CPU seconds so far of each process of ``stack`` still running, by its name, and
    of the servers under them: this run's redis-server and every PostgreSQL process
    (the machine's server: another client's work there counts too, so it is named as
    the server's, not this run's)."""
    cpu = {p.name: cpu_seconds(p.process.pid) for p in stack.procs if p.alive()}
    port = redis_url.rsplit(":", 1)[1].split("/", 1)[0]
    cpu["redis"] = cpu["postgres"] = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            command = (proc / "cmdline").read_bytes().split(b"\0")
            name = Path(command[0].decode()).name
            if name.startswith("redis-server") and f":{port}".encode() in b" ".join(command):
                cpu["redis"] += cpu_seconds(int(proc.name))
            elif name == "postgres" or command[0].startswith(b"postgres:"):
                cpu["postgres"] += cpu_seconds(int(proc.name))
    return cpu


def push_failures(sandbox: str) -> int:
    """How many of the sandbox's receipt pushes were not answered ``success`` (each
    is pushed again 60 s later, as ihuyi does)."""
    pushes = httpx.get(f"{sandbox}/_sandbox/pushes", timeout=30).json()["pushes"]
    return sum(1 for push in pushes if not push["ok"])


def complaints(stack: Stack, most: int = 5) -> list[str]:
    """The distinct WARNING and ERROR lines of the stack's logs (the first ``most``):
    a run that retried or refused something says so beside its figures."""
    seen: dict[str, None] = {}
    for proc in stack.procs:
        for line in proc.text().splitlines():
            if " WARNING " in line or " ERROR " in line:
                seen.setdefault(f"{proc.name}: {line.split(' ', 2)[-1][:200]}", None)
    return list(seen)[:most]


def notification(n: int) -> dict[str, Any]:
    """The n-th notification: a distinct mainland mobile each (13x xxxx xxxx)."""
    return {"provider": "ihuyi", "to": f"13{n:09d}", "content": TEXT}


async def drive(
    base_url: str,
    requests: int,
    concurrency: int,
    make: Callable[[int], tuple[str, dict[str, Any], int]],
    name: str,
    key: str = KEY,
) -> Phase:
    """``requests`` posts, ``concurrency`` at a time; every answer must be a success."""
    latencies: list[float] = []
    items = 0
    next_index = 0
    headers = {"Authorization": f"Bearer {key}"}

    async def runner() -> None:
        """One connection, kept alive, one request at a time (bench/http1.py: a client
        that costs the shared cores little, so the server is what is measured)."""
        nonlocal next_index, items
        async with JsonPoster(base_url, headers) as client:
            while next_index < requests:
                index = next_index
                next_index += 1
                path, body, count = make(index)
                started = time.perf_counter()
                status, answer = await client.post(path, body)
                latencies.append(time.perf_counter() - started)
                if status not in (200, 202):
                    raise RuntimeError(f"{path}: {status} {answer[:300]!r}")
                if path.endswith(":batch") and json.loads(answer)["accepted"] != count:
                    raise RuntimeError(f"batch {index}: {answer[:300]!r}")
                items += count

    started = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return Phase(name, requests, items, seconds, latencies)


def check_ledger(database_url: str, redis_url: str, expected: int) -> tuple[int, int]:
    """Every notification stored once and queued, and every id in a dispatch message."""
    engine = create_engine(database_url)
    table = Notification.__table__
    with engine.connect() as conn:
        rows = conn.execute(
            select(func.count(), func.count(func.distinct(table.c.to))).where(
                table.c.status == "queued"
            )
        ).one()
    engine.dispose()
    if tuple(rows) != (expected, expected):
        raise RuntimeError(f"ledger holds {tuple(rows)} queued/distinct, expected {expected}")
    client = redis.Redis.from_url(redis_url)
    messages = client.lrange(DISPATCH_QUEUE, 0, -1)
    ids: set[int] = set()
    for raw in messages:
        args = json.loads(base64.b64decode(json.loads(raw)["body"]))[0]
        ids.update(args[0])
    if len(ids) != expected:
        raise RuntimeError(f"broker holds {len(ids)} ids, expected {expected}")
    return expected, len(messages)


def end_to_end(
    directory: Path,
    redis_url: str,
    server_url: str | None,
    posts: int,
    clients: int,
    latency_ms: int,
    workers: int,
    receipts: bool = True,
    receipt_delay: float = 0.5,
    spy_path: str | None = None,
    spy_on: str = "api",
) -> dict[str, float]:
    """(c) the bare-Celery ceiling, then (d) single posts while the workers run (and, with
    ``receipts``, the sandbox pushes a receipt back to the API for every call); py-spy
    records the process named ``spy_on`` (api, sandbox, e2e0, beat…) during (d)."""
    sandbox = f"http://127.0.0.1:{free_port()}"
    ceiling_env = (redis_url, f"sqlite:///{directory / 'ceiling.db'}", sandbox, "threads", 200)
    stack = Stack(directory, dict(base_env(*ceiling_env)))
    ceiling_args = (redis_url, posts, latency_ms / 1000, workers, "threads", 200)
    try:
        before = ceiling(stack, *ceiling_args)
    finally:
        stack.stop()
    redis.Redis.from_url(redis_url).flushdb()
    with fresh_database(server_url, directory, "e2e") as database_url:
        env = base_env(redis_url, database_url, sandbox, "threads", 64)
        env.pop("NOTIFYQ_WORKER_CONCURRENCY")  # the defaults: what a user runs
        env["NOTIFYQ_API_KEYS"] = KEY
        port = free_port()
        if receipts:  # the sandbox's ihuyi "console" binds the API's receipt route
            env["NOTIFYQ_CALLBACK_TOKEN"] = CALLBACK_TOKEN
            env["NOTIFYQ_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        stack = Stack(directory, env)
        with stack_run(stack) as spy:
            with stack.together():
                stack.sandbox(
                    int(sandbox.rsplit(":", 1)[1]),
                    "--latency-ms",
                    str(latency_ms),
                    "--receipt-delay",
                    str(receipt_delay),
                )
                api = stack.api(port)
                for i in range(workers):
                    stack.worker(name=f"e2e{i}")
                stack.beat()
            spied = next(p for p in stack.procs if p.name == spy_on) if spy_path else api
            spy.on(spied.process.pid, spy_path)
            cpu_before, own_before = cpu_by_process(stack, redis_url), time.process_time()
            started = time.time()
            phase = asyncio.run(
                drive(
                    f"http://127.0.0.1:{port}",
                    posts,
                    clients,
                    lambda i: ("/v1/notifications", notification(10_000_000 + i), 1),
                    "end to end",
                )
            )
            engine = create_engine(database_url)
            table, events = Notification.__table__, Event.__table__

            def count(statuses: tuple[str, ...]) -> int:
                with engine.connect() as conn:
                    return conn.execute(
                        select(func.count()).where(table.c.status.in_(statuses))
                    ).scalar_one()

            # a receipt can move a row past ``sent`` before this looks: sent or beyond
            done = ("sent", *FINAL) if receipts else ("sent",)
            wait_until(lambda: count(done) >= posts, 900, interval=0.5, what=f"{posts} sent")
            if receipts:
                wait_until(
                    lambda: count(FINAL) >= posts, 900, interval=0.5, what=f"{posts} receipted"
                )
            cpu = {
                name: seconds - cpu_before.get(name, 0.0)
                for name, seconds in cpu_by_process(stack, redis_url).items()
            }
            cpu["client"] = time.process_time() - own_before
            busy = time.time() - started
            spy.stop()
            failed_pushes = push_failures(sandbox) if receipts else 0
            for line in complaints(stack):
                print(f"  logged during (d): {line}")
            with engine.connect() as conn:
                last = conn.execute(
                    select(func.max(events.c.at)).where(events.c.to_status == "sent")
                ).scalar_one()
                sends = conn.execute(
                    select(table.c.created_at, events.c.at)
                    .join(events, events.c.notification_id == table.c.id)
                    .where(events.c.to_status == "sent")
                ).all()
                receipted = conn.execute(
                    select(func.max(events.c.at)).where(events.c.to_status.in_(FINAL))
                ).scalar_one()
            engine.dispose()
    stack = Stack(directory, dict(base_env(*ceiling_env)))
    try:
        top = bracket(before, ceiling(stack, *ceiling_args))
    finally:
        stack.stop()
    latencies = sorted((at - created) * 1000 for created, at in sends)
    figures = {
        "ceiling_per_s": top["per_s"],
        "ceiling_before_per_s": top["before"],
        "ceiling_after_per_s": top["after"],
        "posts_per_s": phase.rps,
        "post_p50_ms": phase.quantile(0.50),
        "post_p99_ms": phase.quantile(0.99),
        "sends_per_s": posts / (last - started),
        "enqueue_to_sent_p50_ms": statistics.median(latencies),
        "enqueue_to_sent_p99_ms": latencies[int(len(latencies) * 0.99) - 1],
    }
    figures.update({f"cpu_s:{name}": seconds for name, seconds in cpu.items()})
    figures["cpu_wall_s"] = busy
    if receipts:
        figures["failed_pushes"] = failed_pushes
        figures["receipted_per_s"] = posts / (receipted - started)
        figures["receipted_after_sent_s"] = receipted - last
    return figures


def report_e2e(args: argparse.Namespace, e2e: dict[str, float], posts: int) -> float:
    """Print (c) and (d); the share of the ceiling sent end to end."""
    share = e2e["sends_per_s"] / e2e["ceiling_per_s"]
    print(
        f"\nwith {args.workers} workers and beat running, sandbox at {args.latency_ms} ms, "
        f"{args.e2e_clients} clients posting single notifications ({posts}):"
    )
    print(f"{'run':34} {'per s':>9} {'vs ceiling':>11} {'p50 ms':>8} {'p99 ms':>8}")
    print(
        f"{'(c) ceiling: bare Celery sleeps':34} {e2e['ceiling_per_s']:9.0f} {'100%':>11}"
        f"   (mean of {e2e['ceiling_before_per_s']:.0f} before (d) and "
        f"{e2e['ceiling_after_per_s']:.0f} after)"
    )
    print(
        f"{'(d) posts accepted':34} {e2e['posts_per_s']:9.0f} {'':11} "
        f"{e2e['post_p50_ms']:8.1f} {e2e['post_p99_ms']:8.1f}"
    )
    print(
        f"{'(d) sent end to end (post→sent)':34} {e2e['sends_per_s']:9.0f} {share:10.0%} "
        f"{e2e['enqueue_to_sent_p50_ms']:8.0f} {e2e['enqueue_to_sent_p99_ms']:8.0f}"
    )
    if "receipted_per_s" in e2e:
        print(
            f"{'(d) receipted (post→delivered)':34} {e2e['receipted_per_s']:9.0f} "
            f"{e2e['receipted_per_s'] / e2e['ceiling_per_s']:10.0%}   (every call's receipt "
            f"pushed {args.receipt_delay} s after it; the last applied "
            f"{e2e['receipted_after_sent_s']:.2f} s after the last send; "
            f"{e2e['failed_pushes']:.0f} pushes not answered success)"
        )
    else:
        print("(d) without receipts (--no-receipts): the sandbox pushed none")
    cpu = {k.removeprefix("cpu_s:"): v for k, v in e2e.items() if k.startswith("cpu_s:")}
    print(
        f"CPU seconds during (d), {e2e['cpu_wall_s']:.1f} s of wall time: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items())
    )
    return share


def e2e_figures(args: argparse.Namespace, e2e: dict[str, float], posts: int) -> dict[str, Any]:
    return {
        "e2e_posts": posts,
        "e2e_clients": args.e2e_clients,
        "e2e_ceiling_per_s": round(e2e["ceiling_per_s"], 1),
        "e2e_ceiling_before_per_s": round(e2e["ceiling_before_per_s"], 1),
        "e2e_ceiling_after_per_s": round(e2e["ceiling_after_per_s"], 1),
        "e2e_posts_per_s": round(e2e["posts_per_s"], 1),
        "e2e_post_p99_ms": round(e2e["post_p99_ms"], 1),
        "e2e_sends_per_s": round(e2e["sends_per_s"], 1),
        "e2e_vs_ceiling": round(e2e["sends_per_s"] / e2e["ceiling_per_s"], 3),
        "e2e_enqueue_to_sent_p99_ms": round(e2e["enqueue_to_sent_p99_ms"]),
        "e2e_receipts": "receipted_per_s" in e2e,
        "e2e_cpu_s": {
            k.removeprefix("cpu_s:"): round(v, 1) for k, v in e2e.items() if k.startswith("cpu_s:")
        },
        **(
            {
                "e2e_receipted_per_s": round(e2e["receipted_per_s"], 1),
                "e2e_receipted_after_sent_s": round(e2e["receipted_after_sent_s"], 2),
                "e2e_failed_pushes": int(e2e["failed_pushes"]),
            }
            if "receipted_per_s" in e2e
            else {}
        ),
    }


def run_e2e(
    args: argparse.Namespace,
    directory: Path,
    redis_url: str,
    posts: int,
    spy_path: str | None = None,
) -> dict[str, float]:
    """(c) and (d) as the command line asks."""
    return end_to_end(
        directory,
        redis_url,
        args.database_url,
        posts,
        args.e2e_clients,
        args.latency_ms,
        args.workers,
        receipts=args.receipts,
        receipt_delay=args.receipt_delay,
        spy_path=spy_path,
        spy_on=args.spy_on,
    )


def e2e_only(args: argparse.Namespace) -> None:
    """(c) and (d) alone: the figure a user of the HTTP API with workers running sees."""
    posts = args.e2e or (2_000 if args.quick else 6_000)
    with private_redis("nq-bench-api-") as (directory, server):
        e2e = run_e2e(args, directory, server.url, posts, args.py_spy)
    print(f"notifyq api, one uvicorn process, {store_kind(args.database_url)}, private Redis")
    report_e2e(args, e2e, posts)
    figures = {
        "store": store_kind(args.database_url).lower(),
        "quick": args.quick,
        **e2e_figures(args, e2e, posts),
    }
    print(json.dumps(figures))


def main() -> None:
    install_sigterm_as_interrupt()  # SIGTERM stops what this run started, as Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under 30 s")
    parser.add_argument("--single", type=int, help="single posts (default 20,000; quick 2,000)")
    parser.add_argument("--batches", type=int, help="batch posts (default 300; quick 40)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument(
        "--py-spy",
        metavar="FILE",
        help="record the API process to FILE: during (a) and (b), or (d) with --e2e-only",
    )
    parser.add_argument(
        "--spy-on",
        default="api",
        help="with --e2e-only --py-spy: the process recorded during (d) (api, sandbox, e2e0, beat)",
    )
    add_database_url(parser)
    parser.add_argument("--e2e", type=int, help="posts end to end (default 6,000; quick 2,000)")
    parser.add_argument("--e2e-clients", type=int, default=16)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--no-receipts",
        dest="receipts",
        action="store_false",
        help="(d) without the sandbox pushing a receipt to the API for every call",
    )
    parser.add_argument(
        "--receipt-delay", type=float, default=0.5, help="seconds from a call to its receipt"
    )
    parser.add_argument(
        "--e2e-only", action="store_true", help="only (c) the ceiling and (d) end to end"
    )
    args = parser.parse_args()
    if args.e2e_only:
        e2e_only(args)
        return
    store = store_kind(args.database_url)
    e2e_posts = args.e2e or (2_000 if args.quick else 6_000)
    single = args.single or (2_000 if args.quick else 20_000)
    batches = args.batches or (40 if args.quick else 300)
    warm = 200

    with (
        private_redis("nq-bench-api-") as (directory, server),
        fresh_database(args.database_url, directory, "notifyq") as database_url,
    ):
        env = {
            "NOTIFYQ_REDIS_URL": server.url,
            "NOTIFYQ_DATABASE_URL": database_url,
            "NOTIFYQ_API_KEYS": KEY,
            "PYTHONPATH": str(ROOT),
        }
        stack = Stack(directory, env)
        port = free_port()
        with stack_run(stack) as spy:
            api = stack.api(port)
            base_url = f"http://127.0.0.1:{port}"
            spy.on(api.process.pid, args.py_spy)
            asyncio.run(
                drive(
                    base_url,
                    warm,
                    args.concurrency,
                    lambda i: ("/v1/notifications", notification(i), 1),
                    "warm-up",
                )
            )
            first = warm
            one = asyncio.run(
                drive(
                    base_url,
                    single,
                    args.concurrency,
                    lambda i: ("/v1/notifications", notification(first + i), 1),
                    "single",
                )
            )
            first += single
            size = args.batch_size

            def batch(i: int) -> tuple[str, dict[str, Any], int]:
                start = first + i * size
                items = [notification(start + k) for k in range(size)]
                return "/v1/notifications:batch", {"notifications": items}, size

            many = asyncio.run(drive(base_url, batches, min(args.concurrency, 16), batch, "batch"))
            spy.stop()
            stored, messages = check_ledger(database_url, server.url, warm + one.items + many.items)
            stack.stop()
            e2e = run_e2e(args, directory, server.url, e2e_posts)

    print(
        f"notifyq api, one uvicorn process, {store}, private Redis; client: bench/http1.py "
        f"in this process ({args.concurrency} in flight for single posts, "
        f"{min(args.concurrency, 16)} for batches of {size})"
    )
    print(f"{'run':34} {'requests':>9} {'req/s':>8} {'items/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for phase, label in (
        (one, "(a) single POST /v1/notifications"),
        (many, "(b) batch of 100, :batch"),
    ):
        print(
            f"{label:34} {phase.requests:9d} {phase.rps:8.0f} {phase.items_per_s:9.0f} "
            f"{phase.quantile(0.50):8.1f} {phase.quantile(0.99):8.1f}"
        )
    ratio = many.items_per_s / one.items_per_s
    report_e2e(args, e2e, e2e_posts)
    print(
        f"batch vs single: {ratio:.1f}× the notifications per second; "
        f"ledger checked: {stored} queued once each, in {messages} dispatch messages"
    )
    figures = {
        "enqueue_rps": round(one.rps, 1),
        "p50_ms": round(one.quantile(0.50), 2),
        "p99_ms": round(one.quantile(0.99), 2),
        "mean_ms": round(statistics.fmean(one.latencies) * 1000, 2),
        "batch_items_per_s": round(many.items_per_s, 1),
        "batch_rps": round(many.rps, 2),
        "batch_p50_ms": round(many.quantile(0.50), 2),
        "batch_p99_ms": round(many.quantile(0.99), 2),
        "batch_vs_single": round(ratio, 2),
        "single_requests": one.requests,
        "batch_requests": many.requests,
        "batch_size": size,
        "concurrency": args.concurrency,
        "batch_concurrency": min(args.concurrency, 16),
        "store": store.lower(),
        "quick": args.quick,
        **e2e_figures(args, e2e, e2e_posts),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
