"""Dispatch throughput at real provider latency, against the bare-Celery ceiling.

One run, one machine, one private Redis, the store (SQLite by default; PostgreSQL with
``--database-url``; a fresh database each run), the sandbox answering every call after
``--latency-ms`` (200 ms):

(a) ceiling   bare Celery tasks that only sleep that long, same pool, same concurrency,
              same worker count, published by one process as fast as it can;
(b) notifyq   end to end — enqueue (validate, store, publish) → caps → provider call
              → stored ``sent`` — for N notifications to distinct numbers, produced
              four ways:
              - ``enqueue_many`` in chunks, one dispatch task per notification
                (``NOTIFYQ_DISPATCH_BATCH=1``: what messages carrying one id cost);
              - ``enqueue_many`` in chunks, the default batches per task;
              - ``enqueue()`` one notification a call, in a loop from 1 thread;
              - ``enqueue()`` one notification a call, from 8 threads at once.

For each notifyq run it also counts what one sent notification costs: Redis commands
(``INFO commandstats`` over the run, every client: workers, beat, producer), SQL
statements (workers and beat, through bench/hook/sitecustomize.py; the producer's
apart), and bytes the store grew by.

Prints a table, then as its last line one JSON object:
``{"sends_per_s", "ceiling_per_s", "vs_ceiling", "single_vs_ceiling", ...}``.

    python bench/dispatch.py            # 20,000 notifications a run
    python bench/dispatch.py --quick    # 3,000 a run
    python bench/dispatch.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

# first on the path, or ``store`` would be bench/store.py (a script's own folder leads)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.run import bench_parser, private_redis  # noqa: E402
from bench.store import fresh_database, kind, stored_bytes, wal_lsn  # noqa: E402
from config.settings import Settings  # noqa: E402
from harness.supervise import Stack, free_port, wait_until  # noqa: E402
from store.schema import Event, Notification  # noqa: E402
from tasks.enqueue import enqueue, enqueue_many  # noqa: E402
from tasks.publish import flush_dispatch  # noqa: E402
from tasks.requests import SendRequest  # noqa: E402
from tasks.runtime import Runtime  # noqa: E402

CELERY = str(Path(sys.executable).with_name("celery"))
HOOK = ROOT / "bench" / "hook"


def base_env(
    redis_url: str, database_url: str, sandbox: str, pool: str, concurrency: int
) -> dict[str, str]:
    return {
        "NOTIFYQ_REDIS_URL": redis_url,
        "NOTIFYQ_DATABASE_URL": database_url,
        "NOTIFYQ_IHUYI_ACCOUNT": "bench",
        "NOTIFYQ_IHUYI_APIKEY": "bench-apikey",
        "NOTIFYQ_IHUYI_BASE_URL": sandbox,
        "NOTIFYQ_WORKER_POOL": pool,
        "NOTIFYQ_WORKER_CONCURRENCY": str(concurrency),
        "NOTIFYQ_SWEEP_GRACE": "900",
        "NOTIFYQ_SENDING_TIMEOUT": "900",
        "NOTIFYQ_LOG_LEVEL": "INFO",
        "NOTIFYQ_TASK_LOG_LEVEL": "WARNING",  # as the ceiling's workers: no line per task
        "PYTHONPATH": str(ROOT),
    }


def ceiling(
    stack: Stack, redis_url: str, n: int, latency: float, workers: int, pool: str, concurrency: int
) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    for i in range(workers):
        stack.start(
            f"ceiling{i}",
            "-A",
            "bench.ceiling",
            "worker",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-Q",
            "notifyq",
            "--without-mingle",
            "--without-gossip",
            "-E",
            "-l",
            "WARNING",
            "-n",
            f"ceiling{i}@%h",
            program=CELERY,
            cwd=ROOT,
            url=None,
            ready=None,
        )
    from bench.ceiling import celery as app  # noqa: PLC0415  (reads its settings at import)

    app.conf.broker_url = redis_url
    # timed from the moment every worker answers a ping (not from a guess at how long
    # they take to start: a slow start would have been counted against the ceiling)
    wait_until(
        lambda: len(app.control.ping(timeout=0.5)) >= workers,
        120,
        interval=0.2,
        what="ceiling workers",
    )
    started = time.time()
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            app.send_task("bench.sleep", args=[latency], queue="notifyq", producer=producer)
    published = time.time()
    wait_until(
        lambda: int(client.get("bench:done") or 0) >= n, 600, interval=0.2, what="ceiling tasks"
    )
    finished = float(client.get("bench:last"))
    stack.stop()
    stack.procs.clear()
    return {"per_s": n / (finished - started), "publish_per_s": n / (published - started)}


def bracket(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The ceiling measured before and after the runs it is compared with, and their mean.

    This machine's speed drifts (the same pure-Python loop took 0.36 s and 0.65 s minutes
    apart on a shared 2-core host): one ceiling at the start would let a drift between it
    and a run read as notifyq's gain or loss. The mean of both brackets the runs, and
    the two figures printed side by side show how far the machine moved meanwhile."""
    return {
        "per_s": (before["per_s"] + after["per_s"]) / 2,
        "publish_per_s": (before["publish_per_s"] + after["publish_per_s"]) / 2,
        "before": before["per_s"],
        "after": after["per_s"],
    }


def sql_counts(directory: Path) -> Counter[str]:
    """The statements counted so far by every hooked process writing to ``directory``."""
    total: Counter[str] = Counter()
    for path in directory.glob("*.json"):
        try:
            total.update(json.loads(path.read_text()))
        except (OSError, ValueError):  # being replaced right now: the next read has it
            continue
    return total


def redis_commands(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


class ProducerCount:
    """SQL statements this process sends through one engine (the producer's share)."""

    def __init__(self, engine: Any) -> None:

        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

        def count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            with self._lock:
                self.counts[statement.lstrip().split(None, 1)[0].upper()] += 1

        def commit(conn):  # type: ignore[no-untyped-def]
            with self._lock:
                self.counts["COMMIT"] += 1

        event.listen(engine, "before_cursor_execute", count)
        event.listen(engine, "commit", commit)


def produce(runtime: Any, requests: list[Any], producer: str, threads: int) -> None:
    """Enqueue ``requests`` as the run says: in chunks, or one ``enqueue()`` a call."""

    if producer == "many":
        for chunk in range(0, len(requests), 1000):
            enqueue_many(requests[chunk : chunk + 1000], runtime=runtime)
        return

    def loop(part: list[Any]) -> None:
        for request in part:
            enqueue(request.provider, request.to, content=request.content, runtime=runtime)

    parts = [requests[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=loop, args=(part,)) for part in parts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    flush_dispatch()


def notifyq_run(
    stack: Stack,
    env: dict[str, str],
    n: int,
    batch: int,
    latency_ms: int,
    workers: int,
    concurrency: int,
    producer: str,
    threads: int,
    count_dir: Path,
) -> dict[str, Any]:

    client = redis.Redis.from_url(env["NOTIFYQ_REDIS_URL"])
    client.flushdb()
    env["NOTIFYQ_DISPATCH_BATCH"] = str(batch)
    env["NOTIFYQ_WORKER_CONCURRENCY"] = str(concurrency)
    stack.env.update(env)
    count_dir.mkdir(parents=True)
    hooked = {
        "NOTIFYQ_BENCH_COUNT_SQL": str(count_dir),
        "PYTHONPATH": os.pathsep.join((str(HOOK), str(ROOT))),
    }
    sandbox_port = int(env["NOTIFYQ_IHUYI_BASE_URL"].rsplit(":", 1)[1])
    with stack.together():
        stack.sandbox(sandbox_port, "--latency-ms", str(latency_ms))
        for i in range(workers):
            stack.worker(name=f"notifyq{i}", extra_env=hooked)
        stack.start("beat", "beat", ready="is starting.", extra_env=hooked)
    settings = Settings(
        _env_file=None,
        **{
            k.removeprefix("NOTIFYQ_").lower(): v
            for k, v in env.items()
            if k.startswith("NOTIFYQ_")
        },
    )
    runtime = Runtime.build(settings)
    database_url = env["NOTIFYQ_DATABASE_URL"]
    requests = [
        SendRequest(provider="ihuyi", to=f"139{i:08d}", content=f"您的验证码是{i % 10000:04d}。")
        for i in range(n)
    ]
    table, events = Notification.__table__, Event.__table__
    time.sleep(1.2)  # the hooked processes have written their start-up counts
    bytes_before, wal_before = stored_bytes(database_url), wal_lsn(database_url)
    sql_before = sql_counts(count_dir)
    producer_count = ProducerCount(runtime.db.engine)
    client.config_resetstat()
    started = time.time()
    produce(runtime, requests, producer, threads)
    enqueued = time.time()

    def sent() -> int:
        with runtime.db.read() as conn:
            return conn.execute(select(func.count()).where(table.c.status == "sent")).scalar_one()

    wait_until(lambda: sent() >= n, 900, interval=0.5, what=f"{n} sent")
    commands = redis_commands(client)
    time.sleep(1.2)
    sql = sql_counts(count_dir) - sql_before
    with runtime.db.read() as conn:
        rows = conn.execute(
            select(table.c.created_at, events.c.at)
            .join(events, events.c.notification_id == table.c.id)
            .where(events.c.to_status == "sent")
        ).all()
        attempts = conn.execute(select(func.sum(table.c.attempts))).scalar_one()
        moves = {
            status: count
            for status, count in conn.execute(
                select(events.c.to_status, func.count()).group_by(events.c.to_status)
            )
        }
    latencies = sorted((at - created) * 1000 for created, at in rows)
    last = max(at for _, at in rows)
    runtime.close()
    stack.stop()
    stack.procs.clear()
    wal_after = wal_lsn(database_url)
    return {
        "per_s": n / (last - started),
        "enqueue_per_s": n / (enqueued - started),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "attempts": attempts,
        "events_per_sent": {k: round(v / n, 3) for k, v in sorted(moves.items())},
        "redis_per_sent": sum(commands.values()) / n,
        "redis_top": {k: round(v / n, 2) for k, v in commands.most_common(8)},
        "sql_per_sent": sum(sql.values()) / n,
        "sql_top": {k: round(v / n, 2) for k, v in sql.most_common(8)},
        "producer_sql_per_sent": sum(producer_count.counts.values()) / n,
        "store_bytes_per_sent": (stored_bytes(database_url) - bytes_before) / n,
        "wal_bytes_per_sent": None
        if wal_before is None or wal_after is None
        else (wal_after - wal_before) / n,
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="3,000 notifications, not 20,000")
    parser.add_argument("-n", type=int, default=None)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", default="threads")
    parser.add_argument(
        "--concurrency", type=int, default=200, help="threads a worker: ceiling and one-task runs"
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="notifications a dispatch task (default: setting)"
    )
    parser.add_argument(
        "--batched-concurrency", type=int, default=None, help="threads a worker when batched"
    )
    parser.add_argument("--threads", type=int, default=8, help="producer threads, enqueue() run")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to run on (a fresh database each run), not SQLite",
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated runs: one-task,batched,single-1,single-N"
    )
    args = parser.parse_args()
    n = args.n or (3000 if args.quick else 20000)
    defaults = Settings(_env_file=None)
    batch = args.batch or defaults.dispatch_batch
    batched_threads = args.batched_concurrency or defaults.worker_concurrency
    store = kind(args.database_url)
    modes = {
        "one-task": ("enqueue_many, one task per notification", "many", 1, 1, args.concurrency),
        "batched": (f"enqueue_many, batches of {batch}", "many", batch, 1, batched_threads),
        "single-1": ("enqueue() one at a time, 1 thread", "single", batch, 1, batched_threads),
        "single-N": (
            f"enqueue() one at a time, {args.threads} threads",
            "single",
            batch,
            args.threads,
            batched_threads,
        ),
    }
    chosen = args.only.split(",") if args.only else list(modes)

    with private_redis("nq-bench-") as (directory, server):  # AOF everysec, as in production
        sandbox = f"http://127.0.0.1:{free_port()}"
        env = base_env(
            server.url,
            f"sqlite:///{directory / 'ceiling.db'}",
            sandbox,
            args.pool,
            args.concurrency,
        )
        stack = Stack(directory, dict(env))
        runs: dict[str, dict[str, Any]] = {}
        ceiling_args = (
            server.url,
            n,
            args.latency_ms / 1000,
            args.workers,
            args.pool,
            args.concurrency,
        )
        try:
            before = ceiling(stack, *ceiling_args)
            for key in chosen:
                _label, producer, size, threads, worker_threads = modes[key]
                with fresh_database(args.database_url, directory, f"bench-{key}") as url:
                    env["NOTIFYQ_DATABASE_URL"] = url
                    runs[key] = notifyq_run(
                        stack,
                        dict(env),
                        n,
                        size,
                        args.latency_ms,
                        args.workers,
                        worker_threads,
                        producer,
                        threads,
                        directory / f"sql-{key}",
                    )
            top = bracket(before, ceiling(stack, *ceiling_args))
        finally:
            stack.stop()

    print(
        f"\nbench/dispatch.py: {n} notifications a run, provider latency {args.latency_ms} ms, "
        f"{args.workers} workers, {args.pool} pool, {store}, one Redis (AOF everysec);\n"
        f"ceiling and one-task runs at {args.concurrency} threads a worker, "
        f"the others at {batched_threads} (the default)\n"
    )
    print(
        f"{'run':46} {'sent/s':>7} {'vs ceil':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'redis':>6} {'sql':>5} {'+prod':>5} {'bytes':>6}"
    )
    print(
        f"{'(a) ceiling: bare Celery sleep tasks':46} {top['per_s']:7.0f} {'100%':>8}"
        f"   (mean of {top['before']:.0f} before the runs and {top['after']:.0f} after)"
    )
    for key, run in runs.items():
        label = "(b) " + modes[key][0]
        print(
            f"{label:46} {run['per_s']:7.0f} {run['per_s'] / top['per_s']:8.0%} "
            f"{run['p50_ms']:7.0f} {run['p99_ms']:7.0f} {run['redis_per_sent']:6.1f} "
            f"{run['sql_per_sent']:5.1f} {run['producer_sql_per_sent']:5.1f} "
            f"{run['store_bytes_per_sent']:6.0f}"
        )
    print(
        "\nper sent notification: redis = commands (all clients, INFO commandstats); "
        "sql = statements + commits\nby workers and beat; +prod = the producer's; "
        "bytes = growth of the store"
    )
    for key, run in runs.items():
        wal = run["wal_bytes_per_sent"]
        print(
            f"  {key:9} redis {run['redis_top']}\n  {'':9} sql   {run['sql_top']}"
            f"\n  {'':9} transitions {run['events_per_sent']}, attempts {run['attempts'] / n:.2f}"
            + (f"\n  {'':9} WAL {wal:.0f} bytes (server-wide)" if wal is not None else "")
        )
    print(f"\npublishes/s from one process (ceiling producer): {top['publish_per_s']:.0f}")
    for key, run in runs.items():
        print(f"  {key}: enqueues/s {run['enqueue_per_s']:.0f}")

    figures: dict[str, Any] = {
        "ceiling_per_s": round(top["per_s"], 1),
        "ceiling_before_per_s": round(top["before"], 1),
        "ceiling_after_per_s": round(top["after"], 1),
        "ceiling_publish_per_s": round(top["publish_per_s"], 1),
        "store": store.lower(),
        "n": n,
        "latency_ms": args.latency_ms,
        "pool": args.pool,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "batched_concurrency": batched_threads,
        "batch": batch,
        "threads": args.threads,
    }
    prefixes = {"one-task": "single_task", "batched": "batched", "single-1": "single_1"}
    prefixes["single-N"] = f"single_{args.threads}"
    for key, run in runs.items():
        prefix = prefixes[key]
        figures[f"{prefix}_sends_per_s"] = round(run["per_s"], 1)
        figures[f"{prefix}_vs_ceiling"] = round(run["per_s"] / top["per_s"], 3)
        figures[f"{prefix}_p99_enqueue_to_sent_ms"] = round(run["p99_ms"])
        figures[f"{prefix}_enqueue_per_s"] = round(run["enqueue_per_s"], 1)
        figures[f"{prefix}_redis_per_sent"] = round(run["redis_per_sent"], 2)
        figures[f"{prefix}_sql_per_sent"] = round(run["sql_per_sent"], 2)
        figures[f"{prefix}_producer_sql_per_sent"] = round(run["producer_sql_per_sent"], 2)
        figures[f"{prefix}_store_bytes_per_sent"] = round(run["store_bytes_per_sent"])
        figures[f"{prefix}_deferrals_per_sent"] = run["events_per_sent"].get("deferred", 0)
        if run["wal_bytes_per_sent"] is not None:
            figures[f"{prefix}_wal_bytes_per_sent"] = round(run["wal_bytes_per_sent"])
    if "batched" in runs:  # the names the README's first figures used
        figures["sends_per_s"] = figures["batched_sends_per_s"]
        figures["vs_ceiling"] = figures["batched_vs_ceiling"]
        figures["p99_enqueue_to_sent_ms"] = figures["batched_p99_enqueue_to_sent_ms"]
    singles = [runs[k]["per_s"] for k in ("single-1", "single-N") if k in runs]
    if singles:  # the lower of the two one-at-a-time runs
        figures["single_vs_ceiling"] = round(min(singles) / top["per_s"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
