"""A soak: a steady rate for N minutes while a worker is SIGKILLed every minute and Redis
is killed and restarted once; then nothing lost, nothing doubled, no cap exceeded, and
no process grown.

One machine, one private Redis (AOF ``everysec``, as in production: its restart may
lose the last second, which the sweeper and the caps' floor must cover), the store
(SQLite, or PostgreSQL with ``--database-url``: a fresh database), the provider sandbox,
the HTTP API, beat and two workers: ``steady`` lives the whole run, ``victim`` is
SIGKILLed every minute and started again at once (a killed call stays ``sending`` until
the sending timeout, 30 s here, makes it ``unknown``: never called again). A producer
thread POSTs ``--rate`` ihuyi notifications a second to the API, each to a number of
its own, except two in every 50 that go, one right after the other, to one of 10 "hot"
numbers, so the per-number caps (``1/second;3/minute;10/day``) defer some: most for a
second or a minute, and once a hot number has had its 10 of the day, until the next.

When the time is up the producer stops and the run waits (``--drain`` s at most) until
every accepted notification has left the waiting states. Then, from the store and the
sandbox's ledger (every request it answered):

- **lost**: accepted (``202``) but never ended and never called;
- **doubled**: a number called more times than it had notifications;
- **cap violations**: a hot number called beyond a cap in any window (the ledger's
  times), plus any call the emulator refused for its own per-number caps;
- **held by caps**: notifications our caps deferred at least once (they were exercised);
- **p99 enqueue→call**: from the ``202`` to the call's arrival at the sandbox, over the
  numbers of their own (the hot ones wait for their caps by design);
- **RSS** of each process (with its children), after a 20 s warm-up and at the end,
  and its growth; the check (≤ 10 %) is over notifyq's long-lived processes (``steady``,
  beat, the API): a killed worker and the restarted Redis are new processes, and the
  sandbox keeps its ledger in memory by design (reported, not checked).

The last line printed is one JSON object with those figures.

    python bench/soak.py                 # 10 minutes
    python bench/soak.py --minutes 3     # a shorter proof
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

# first on the path, or ``store`` would be bench/store.py (a script's own folder leads)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, distinct, func, select  # noqa: E402

from bench.store import fresh_database  # noqa: E402
from harness.signals import install_sigterm_as_interrupt  # noqa: E402
from harness.supervise import Proc, RedisServer, Stack, free_port, wait_until  # noqa: E402
from store.schema import Event, Notification  # noqa: E402
from store.status import WAITING, Status  # noqa: E402

API_KEY = "soak-api-key-4f1e"
CAPS = ((1.0, 1), (60.0, 3), (86400.0, 10))
#: the emulator's own cap refusals (sandbox/ihuyi.py): a call that went beyond a cap
CAP_CODES = {"4080", "4081", "4082"}
HOT = [f"+8613600000{k:03d}" for k in range(10)]
OPEN = {s.value for s in WAITING} | {Status.SENDING.value}
WARM_UP = 20.0
KILL_EVERY = 60.0
RSS_GROWTH_LIMIT = 0.10


def env_for(redis_url: str, database_url: str, sandbox: str, api: str) -> dict[str, str]:
    return {
        "NOTIFYQ_REDIS_URL": redis_url,
        "NOTIFYQ_DATABASE_URL": database_url,
        "NOTIFYQ_API_KEYS": API_KEY,
        "NOTIFYQ_IHUYI_ACCOUNT": "soak",
        "NOTIFYQ_IHUYI_APIKEY": "soak-apikey",
        "NOTIFYQ_IHUYI_BASE_URL": sandbox,
        "NOTIFYQ_IHUYI_CAPS": "1/second;3/minute;10/day",
        "NOTIFYQ_PUBLIC_URL": api,
        "NOTIFYQ_WORKER_CONCURRENCY": "16",
        "NOTIFYQ_SENDING_TIMEOUT": "30",
        "NOTIFYQ_SWEEP_GRACE": "15",
        "NOTIFYQ_SWEEP_INTERVAL": "2",
        "NOTIFYQ_WORKER_METRICS_PORT": "0",
        "NOTIFYQ_LOG_LEVEL": "INFO",  # the workers say "ready." at INFO
    }


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and every process below it."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
        except (OSError, ValueError):
            continue
        parents[int(entry.name)] = int(status["PPid"])
        rss[int(entry.name)] = int(status.get("VmRSS", "0 kB").split()[0])
    tree, grown = {pid}, True
    while grown:
        below = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= below
        grown = bool(below)
    return sum(rss.get(p, 0) for p in tree)


class Producer(threading.Thread):
    """POSTs notifications at a steady rate; remembers what was accepted, and when."""

    def __init__(self, api: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.api, self.interval = api, 1.0 / rate
        self.accepted: dict[int, tuple[str, float]] = {}
        self.refused: Counter[str] = Counter()
        self.stopping = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=self.api, headers=headers, timeout=10) as client:
            due, i = time.monotonic(), 0
            while not self.stopping.is_set():
                # a pair to a hot number (its 1/second cap defers the second) in every 50
                hot = i % 50 in (0, 1)
                to = HOT[(i // 50) % len(HOT)] if hot else f"+86137{i:08d}"
                i += 1
                self.post(client, to)
                due += self.interval
                self.stopping.wait(max(0.0, due - time.monotonic()))

    def post(self, client: httpx.Client, to: str) -> None:
        body = {"provider": "ihuyi", "to": to, "content": "您的快递已到。"}
        try:
            answer = client.post("/v1/notifications", json=body)
        except httpx.HTTPError as exc:
            self.refused[type(exc).__name__] += 1
            return
        if answer.status_code == 202:
            self.accepted[answer.json()["id"]] = (to, time.time())
        else:
            self.refused[str(answer.status_code)] += 1


def statuses(database_url: str, ids: list[int]) -> dict[int, str]:
    """Each notification's status; ``overdue`` for one still open (waiting or
    ``sending``) that is not waiting for a moment still to come, ``missing`` for one the
    store does not hold. A row deferred to a later moment (a daily cap) is on its way,
    with its reason: it is not lost."""
    engine = create_engine(database_url)
    table = Notification.__table__
    now = time.time()
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(table.c.id, table.c.status, table.c.next_attempt_at)).all()
    finally:
        engine.dispose()
    found = {}
    for row in rows:
        status = str(row.status)
        if status in OPEN and not (row.next_attempt_at and row.next_attempt_at > now + 5):
            status = "overdue"
        found[row.id] = status
    return {i: found.get(i, "missing") for i in ids}


def over_caps(times: list[float]) -> int:
    """Calls beyond a cap in any window (each counted once, at the call that exceeds)."""
    times = sorted(times)
    beyond = 0
    for i, at in enumerate(times):
        if any(i >= amount and at - times[i - amount] < window for window, amount in CAPS):
            beyond += 1
    return beyond


def deferred(database_url: str) -> int:
    """Notifications the caps (ours) held back at least once: the caps were exercised."""
    engine = create_engine(database_url)
    events = Event.__table__
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(func.count(distinct(events.c.notification_id))).where(
                    events.c.to_status == Status.DEFERRED.value,
                    events.c.reason.like("cap:%"),
                )
            ).scalar_one()
    finally:
        engine.dispose()


def figures(producer: Producer, ledger: list[dict[str, Any]], final: dict[int, str]) -> dict:
    calls: dict[str, list[float]] = defaultdict(list)
    refused_for_caps = 0
    for call in ledger:
        if call["provider"] != "ihuyi" or not call["number"]:
            continue
        if call["code"] in CAP_CODES:
            refused_for_caps += 1
        calls["+86" + call["number"]].append(call["at"])
    wanted = Counter(to for to, _ in producer.accepted.values())
    lost = sum(
        1
        for i, (to, _) in producer.accepted.items()
        if final[i] in {"overdue", "missing"} and not calls.get(to)
    )
    doubled = sum(max(0, len(calls.get(to, [])) - n) for to, n in wanted.items())
    delays = sorted(
        min(calls[to]) - at
        for to, at in producer.accepted.values()
        if to not in HOT and calls.get(to)
    )
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))] if delays else None
    return {
        "accepted": len(producer.accepted),
        "refused_at_enqueue": dict(producer.refused),
        "statuses": dict(Counter(final.values())),
        "lost": lost,
        "doubled": doubled,
        "cap_violations": sum(over_caps(calls[n]) for n in HOT) + refused_for_caps,
        "p50_enqueue_to_call_s": statistics.median(delays) if delays else None,
        "p99_enqueue_to_call_s": p99,
    }


def main() -> None:
    install_sigterm_as_interrupt()  # SIGTERM stops what this run started, as Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="notifications a second")
    parser.add_argument("--drain", type=float, default=240.0, help="seconds to wait at the end")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (default SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nq-soak-") as tmp:
        directory = Path(tmp)
        with fresh_database(args.database_url, directory, "soak") as database_url:
            print(json.dumps(soak(directory, database_url, args)))


def soak(directory: Path, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    redis_server = RedisServer(directory / "redis", appendfsync="everysec")
    redis_server.start()
    sandbox_port, api_port = free_port(), free_port()
    sandbox, api = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{api_port}"
    stack = Stack(directory, env_for(redis_server.url, database_url, sandbox, api))
    try:
        with stack.together():
            stack.sandbox(sandbox_port, "--receipt-delay", "1")
            stack.api(api_port)
            steady = stack.worker(name="steady")
            victim = stack.worker(name="victim")
            beat = stack.beat()
        long_lived: dict[str, Proc] = {"steady": steady, "beat": beat}
        long_lived["api"] = next(p for p in stack.procs if p.name == "api")
        sandbox_proc = next(p for p in stack.procs if p.name == "sandbox")
        producer = Producer(api, args.rate)
        started = time.monotonic()
        producer.start()
        end = started + args.minutes * 60
        time.sleep(WARM_UP)
        watched = {**long_lived, "sandbox": sandbox_proc}
        rss_start = {name: rss_kb(p.process.pid) for name, p in watched.items()}
        rss_start["redis"] = rss_kb(redis_server.process.pid)  # type: ignore[union-attr]
        kills, restarted = 0, False
        next_kill = started + KILL_EVERY
        trend = [rss_start["steady"]]  # the steady worker's RSS a minute apart: leak or plateau
        next_sample = time.monotonic() + 60
        while time.monotonic() < end:
            if time.monotonic() >= next_sample:
                trend.append(rss_kb(steady.process.pid))
                next_sample += 60
            if not restarted and time.monotonic() >= started + args.minutes * 30:
                redis_server.restart()  # SIGKILL, then the same port and AOF
                restarted = True
            if time.monotonic() >= next_kill:
                victim.kill()
                kills += 1
                victim = stack.worker(name="victim")
                next_kill += KILL_EVERY
            time.sleep(0.5)
        producer.stopping.set()
        producer.join(30)
        ids = list(producer.accepted)
        with contextlib.suppress(TimeoutError):  # what is still overdue is counted below
            wait_until(
                lambda: "overdue" not in statuses(database_url, ids).values(),
                args.drain,
                interval=2,
                what="every accepted notification called, ended or waiting for its time",
            )
        rss_end = {name: rss_kb(p.process.pid) for name, p in watched.items()}
        rss_end["redis"] = rss_kb(redis_server.process.pid)  # type: ignore[union-attr]
        ledger = httpx.get(f"{sandbox}/_sandbox/calls", timeout=60).json()["calls"]
        out = figures(producer, ledger, statuses(database_url, ids))
        out["held_by_caps"] = deferred(database_url)
    finally:
        stack.stop(grace=5)
        redis_server.stop(hard=True)
    growth = {
        name: round(rss_end[name] / rss_start[name] - 1, 3) for name in rss_start if rss_start[name]
    }
    checked = {name: growth[name] for name in long_lived if name in growth}
    out.update(
        {
            "minutes": args.minutes,
            "rate": args.rate,
            "workers_killed": kills,
            "redis_restarts": int(restarted),
            "rss_kb_start": rss_start,
            "rss_kb_end": rss_end,
            "rss_growth": growth,
            "rss_kb_steady_each_minute": trend,
            "rss_growth_ok": all(g <= RSS_GROWTH_LIMIT for g in checked.values()),
            "load": os.getloadavg(),
        }
    )
    table = [
        f"{'process':10} {'RSS start':>10} {'RSS end':>10} {'growth':>8}",
        *(
            f"{name:10} {rss_start[name]:>8} kB {rss_end[name]:>7} kB {growth.get(name, 0):>+8.1%}"
            for name in rss_start
        ),
    ]
    print("\n".join(table), file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
