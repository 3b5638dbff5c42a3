"""Dispatch throughput at real provider latency, against the bare-Celery ceiling.

One run, one machine, one private Redis, SQLite (the default store), the sandbox
answering every call after ``--latency-ms`` (200 ms):

(a) ceiling   bare Celery tasks that only sleep that long, same pool, same concurrency,
              same worker count, published by one process as fast as it can;
(b) notifyq   end to end — enqueue (validate, store, publish) → caps → provider call
              → stored ``sent`` — for N notifications to distinct numbers, twice:
              one dispatch task per notification, and the default small batches per
              task (concurrent HTTP inside; each notification keeps its own state,
              caps and retries).

Prints a table, then as its last line one JSON object:
``{"sends_per_s", "ceiling_per_s", "vs_ceiling", "p99_enqueue_to_sent_ms", ...}``.

    python bench/dispatch.py            # 20,000 notifications
    python bench/dispatch.py --quick    # the same figures from 3,000, in under a minute
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from worker.settings import Settings  # noqa: E402
from worker.supervise import RedisServer, Stack, free_port, wait_until  # noqa: E402

CELERY = str(Path(sys.executable).with_name("celery"))


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
    from bench.ceiling import celery as app

    app.conf.broker_url = redis_url
    time.sleep(4)  # workers connect
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


def notifyq_run(
    stack: Stack,
    env: dict[str, str],
    n: int,
    batch: int,
    latency_ms: int,
    workers: int,
    concurrency: int,
) -> dict[str, float]:
    from tasks.enqueue import enqueue_many
    from tasks.requests import SendRequest
    from tasks.runtime import Runtime
    from worker.store.schema import Event, Notification

    redis.Redis.from_url(env["NOTIFYQ_REDIS_URL"]).flushdb()
    env["NOTIFYQ_DISPATCH_BATCH"] = str(batch)
    env["NOTIFYQ_WORKER_CONCURRENCY"] = str(concurrency)
    stack.env.update(env)
    sandbox_port = int(env["NOTIFYQ_IHUYI_BASE_URL"].rsplit(":", 1)[1])
    stack.sandbox(sandbox_port, "--latency-ms", str(latency_ms))
    for i in range(workers):
        stack.worker(name=f"notifyq{i}")
    stack.beat()
    settings = Settings(
        _env_file=None,
        **{
            k.removeprefix("NOTIFYQ_").lower(): v
            for k, v in env.items()
            if k.startswith("NOTIFYQ_")
        },
    )
    runtime = Runtime.build(settings)
    requests = [
        SendRequest(provider="ihuyi", to=f"139{i:08d}", content=f"您的验证码是{i % 10000:04d}。")
        for i in range(n)
    ]
    started = time.time()
    for chunk in range(0, n, 1000):
        enqueue_many(requests[chunk : chunk + 1000], runtime=runtime)
    enqueued = time.time()
    table, events = Notification.__table__, Event.__table__

    def sent() -> int:
        with runtime.db.read() as conn:
            return conn.execute(select(func.count()).where(table.c.status == "sent")).scalar_one()

    wait_until(lambda: sent() >= n, 900, interval=0.5, what=f"{n} sent")
    with runtime.db.read() as conn:
        rows = conn.execute(
            select(table.c.created_at, events.c.at)
            .join(events, events.c.notification_id == table.c.id)
            .where(events.c.to_status == "sent")
        ).all()
        attempts = conn.execute(select(func.sum(table.c.attempts))).scalar_one()
    latencies = sorted((at - created) * 1000 for created, at in rows)
    last = max(at for _, at in rows)
    runtime.close()
    stack.stop()
    stack.procs.clear()
    return {
        "per_s": n / (last - started),
        "enqueue_per_s": n / (enqueued - started),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "attempts": attempts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    args = parser.parse_args()
    n = args.n or (3000 if args.quick else 20000)
    defaults = Settings(_env_file=None)
    batch = args.batch or defaults.dispatch_batch
    batched_threads = args.batched_concurrency or defaults.worker_concurrency

    with tempfile.TemporaryDirectory(prefix="nq-bench-") as tmp:
        directory = Path(tmp)
        server = RedisServer(directory / "redis")  # AOF everysec, as in production
        server.start()
        sandbox = f"http://127.0.0.1:{free_port()}"
        env = base_env(
            server.url,
            f"sqlite:///{directory / 'ceiling.db'}",
            sandbox,
            args.pool,
            args.concurrency,
        )
        stack = Stack(directory, dict(env))
        runs = {}
        try:
            top = ceiling(
                stack,
                server.url,
                n,
                args.latency_ms / 1000,
                args.workers,
                args.pool,
                args.concurrency,
            )
            modes = (
                ("one task per notification", 1, args.concurrency),
                (f"batches of {batch}", batch, batched_threads),
            )
            for mode, size, threads in modes:
                env["NOTIFYQ_DATABASE_URL"] = f"sqlite:///{directory / f'bench-{size}.db'}"
                runs[mode] = notifyq_run(
                    stack, dict(env), n, size, args.latency_ms, args.workers, threads
                )
        finally:
            stack.stop()
            server.stop()

    single, batched = runs["one task per notification"], runs[f"batches of {batch}"]
    print(
        f"\nbench/dispatch.py: {n} notifications, provider latency {args.latency_ms} ms, "
        f"{args.workers} workers, {args.pool} pool, SQLite, one Redis (AOF everysec);\n"
        f"ceiling and one-task runs at {args.concurrency} threads a worker, "
        f"batched at {batched_threads} (the default)\n"
    )
    print(f"{'run':38} {'per s':>9} {'vs ceiling':>11} {'p50 ms':>9} {'p99 ms':>9}")
    print(f"{'(a) ceiling: bare Celery sleep tasks':38} {top['per_s']:9.0f} {'100%':>11}")
    for mode, run in runs.items():
        share = run["per_s"] / top["per_s"]
        label = "(b) notifyq, " + mode
        print(
            f"{label:38} {run['per_s']:9.0f} {share:10.0%} "
            f"{run['p50_ms']:9.0f} {run['p99_ms']:9.0f}"
        )
    print(
        f"\npublishes/s from one process (ceiling producer): {top['publish_per_s']:.0f}; "
        f"notifyq enqueues/s (validate+store+publish): {batched['enqueue_per_s']:.0f}"
    )
    figures = {
        "sends_per_s": round(batched["per_s"], 1),
        "ceiling_per_s": round(top["per_s"], 1),
        "vs_ceiling": round(batched["per_s"] / top["per_s"], 3),
        "p50_enqueue_to_sent_ms": round(batched["p50_ms"]),
        "p99_enqueue_to_sent_ms": round(batched["p99_ms"]),
        "single_task_sends_per_s": round(single["per_s"], 1),
        "single_task_vs_ceiling": round(single["per_s"] / top["per_s"], 3),
        "single_task_p99_enqueue_to_sent_ms": round(single["p99_ms"]),
        "ceiling_publish_per_s": round(top["publish_per_s"], 1),
        "enqueue_per_s": round(batched["enqueue_per_s"], 1),
        "n": n,
        "latency_ms": args.latency_ms,
        "pool": args.pool,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "batched_concurrency": batched_threads,
        "batch": batch,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
