"""Codes first: how long a verification code and a single notification wait from their
POST to their call at the provider, idle and during a campaign at full speed.

One run, one machine: a private Redis, SQLite (PostgreSQL with ``--database-url``, a
fresh database each run), the sandbox answering every call after 200 ms, two workers,
beat and the API, as ``notifyq dev`` runs them.

1. idle: a code (SMS, apispace-sms) and a single (ihuyi) posted every second for
   ``--probes`` seconds;
2. a campaign of ``--rows`` ihuyi reminders is created and runs at full speed; once it
   is under way, its sends/s are measured for ``--probes``/2 seconds with no probe,
3. then the same probes again, one pair a second, while its sends/s are measured,
4. then ``--probes``/2 seconds with no probe again: the rate "without" is the mean of
   the two quiet halves, so the campaign's own drift does not count as the probes'.

Latency is from just before the POST to the sandbox's record of the call (which it
makes after its 200 ms answer: the provider's own time is inside every figure).
Prints a table, then as its last line one JSON object with ``urgent_idle_p99_ms``,
``urgent_loaded_p99_ms``, ``urgent_loaded_max_ms``, ``normal_loaded_p99_ms``,
``bulk_rate_ratio`` (campaign sends/s with the probes ÷ without) and the rest.

    python bench/latency.py                 # 50,000 rows, 30 probes
    python bench/latency.py --quick         # 10,000 rows, 10 probes (under 3 minutes)
    python bench/latency.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import bindparam, create_engine, text  # noqa: E402

from bench.run import bench_parser, private_redis  # noqa: E402
from bench.store import fresh_database, kind  # noqa: E402
from harness.supervise import Stack, free_port  # noqa: E402
from harness.wiring import sandboxed  # noqa: E402
from scheduler.priority import Priority  # noqa: E402
from tasks.latency import samples_key  # noqa: E402

KEY = "bench-latency-key"
PROVIDER_LATENCY_MS = "200"
TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"
#: a campaign is "under way" once this share of it has been called
UNDER_WAY = 0.05


@dataclass
class Probe:
    """One POST, when it was made, and the national number it calls."""

    priority: str
    number: str
    posted: float
    #: when the API answered (the rest, to the call, is the queue and the worker's)
    answered: float = 0.0
    called: float | None = None

    @property
    def ms(self) -> float | None:
        return None if self.called is None else (self.called - self.posted) * 1000


@dataclass
class Run:
    stack: Stack
    api: str
    sandbox: str
    redis_url: str
    database_url: str
    probes: list[Probe] = field(default_factory=list)
    serial: int = 0

    def post(self, path: str, body: dict[str, Any], probe: Probe) -> None:
        answer = httpx.post(
            f"{self.api}{path}", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
        )
        probe.answered = time.time()
        if answer.status_code != 202:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:300]}")

    def probe_pair(self) -> list[Probe]:
        """A code by SMS and a single ihuyi notification, each to a number of its own."""
        self.serial += 1
        code = Probe("urgent", f"1370{self.serial:07d}", time.time())
        self.post("/v1/verifications", {"to": code.number, "channel": "sms"}, code)
        single = Probe("normal", f"1380{self.serial:07d}", time.time())
        body = {"provider": "ihuyi", "to": single.number, "content": TEXT}
        self.post("/v1/notifications", body, single)
        self.probes += [code, single]
        return [code, single]

    def probe_for(self, seconds: int) -> list[Probe]:
        """One pair a second for ``seconds`` seconds, on the second."""
        made: list[Probe] = []
        start = time.monotonic()
        for i in range(seconds):
            time.sleep(max(0.0, start + i - time.monotonic()))
            made += self.probe_pair()
        return made

    def calls(self, provider: str) -> list[dict[str, Any]]:
        answer = httpx.get(
            f"{self.sandbox}/_sandbox/calls", params={"provider": provider}, timeout=60
        )
        return answer.json()["calls"]

    def placed(self, provider: str) -> int:
        answer = httpx.get(
            f"{self.sandbox}/_sandbox/calls/count", params={"provider": provider}, timeout=30
        )
        return int(answer.json()["calls"])

    def wait_called(self, probes: list[Probe], timeout: float = 120) -> None:
        """Until every probe's number is in the sandbox's ledger (its time recorded)."""
        deadline = time.monotonic() + timeout
        while True:
            seen: dict[str, float] = {}
            for provider in ("apispace-sms", "ihuyi"):
                for call in self.calls(provider):
                    number = str(call["number"] or "")[-11:]
                    seen.setdefault(number, float(call["at"]))
            for probe in probes:
                probe.called = seen.get(probe.number)
            if all(p.called is not None for p in probes) or time.monotonic() > deadline:
                return
            time.sleep(1.0)


def left_after(redis_url: str, priority: str, since: float) -> float:
    """The p99 (ms) of the enqueue → call-leaving waits the workers recorded for a class
    since ``since`` (tasks/latency.py): the part of a probe's wait spent in our queue
    and worker, before the provider (and its 200 ms) had it."""
    client = redis.Redis.from_url(redis_url)
    waits = [
        float(wait) * 1000
        for at, wait in (
            raw.decode().split(":") for raw in client.lrange(samples_key(Priority(priority)), 0, -1)
        )
        if float(at) >= since
    ]
    return percentile(waits, 0.99) if waits else math.nan


def of_probes(database_url: str, sql: str, numbers: list[str]) -> list[Any]:
    """The rows of ``sql``, whose ``:numbers`` are the probes' numbers (E.164)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = text(sql).bindparams(bindparam("numbers", expanding=True))
            return list(conn.execute(query, {"numbers": numbers}).all())
    finally:
        engine.dispose()


def detoured(database_url: str, probes: list[Probe]) -> dict[str, int]:
    """The probes that did not go on their first try, by what held them (a deferral's
    or a retry's reason): a wait of seconds, not of a queue."""
    rows = of_probes(
        database_url,
        "SELECT e.to_status, e.reason FROM events e JOIN notifications n"
        ' ON n.id = e.notification_id WHERE n."to" IN :numbers'
        " AND e.to_status NOT IN ('sending', 'sent', 'delivered')",
        [f"+86{p.number}" for p in probes],
    )
    found: dict[str, int] = {}
    for status, reason in rows:
        key = f"{status}:{reason or ''}"[:80]
        found[key] = found.get(key, 0) + 1
    return found


def left_at(redis_url: str) -> list[tuple[float, float]]:
    """When each recorded urgent or normal call left its worker, beside its row's
    ``created_at``: the samples of tasks/latency.py are ``at:waited`` (ms-rounded), so
    ``at - waited`` is the row's stamp within a millisecond."""
    client = redis.Redis.from_url(redis_url)
    found = []
    for priority in (Priority.URGENT, Priority.NORMAL):
        for raw in client.lrange(samples_key(priority), 0, -1):
            at, wait = (float(x) for x in raw.decode().split(":"))
            found.append((at - wait, at))
    return found


def leaving_of(left: list[tuple[float, float]], created: float) -> float | None:
    return next((at for stamp, at in left if abs(stamp - created) < 0.002), None)


def stages(database_url: str, redis_url: str, probes: list[Probe]) -> dict[str, Any]:
    """Where the probes' time went (ms), p50 and max a stage, and each urgent probe's
    split: the API (the POST to its answer), the queue (the row's stamp to its
    ``sending`` stamp, which a task takes as it starts), the worker (that stamp to the
    call leaving: the claim, the caps, the ``sending`` write, the wait for the call
    loop) and the call (leaving to the sandbox's record: the provider's 200 ms and the
    sandbox's own scheduling)."""
    numbers = {f"+86{p.number}": p for p in probes}
    rows = of_probes(
        database_url,
        'SELECT n."to", n.created_at, MIN(e.at) FROM notifications n'
        " JOIN events e ON e.notification_id = n.id AND e.to_status = 'sending'"
        ' WHERE n."to" IN :numbers GROUP BY n."to", n.created_at',
        list(numbers),
    )
    left = left_at(redis_url)
    spent: dict[str, list[float]] = {"api": [], "queue": [], "worker": [], "call": []}
    urgent: list[dict[str, float]] = []
    for to, created, sending in rows:
        probe = numbers[to]
        split = {
            "api": (probe.answered - probe.posted) * 1000,
            "queue": (float(sending) - float(created)) * 1000,
        }
        leaving = leaving_of(left, float(created))
        if leaving is not None and probe.called is not None:
            split["worker"] = (leaving - float(sending)) * 1000
            split["call"] = (probe.called - leaving) * 1000
        for stage, ms in split.items():
            spent[stage].append(ms)
        if probe.priority == "urgent" and probe.ms is not None:
            urgent.append({"total": probe.ms, **split})
    figures: dict[str, Any] = {
        stage: {"p50": percentile(ms, 0.5), "max": max(ms)} for stage, ms in spent.items() if ms
    }
    figures["urgent"] = sorted(urgent, key=lambda split: -split["total"])
    return figures


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(probes: list[Probe], priority: str) -> dict[str, float | int]:
    waits = [p.ms for p in probes if p.priority == priority and p.ms is not None]
    lost = sum(1 for p in probes if p.priority == priority and p.ms is None)
    if not waits:
        return {
            "p50": math.nan,
            "p99": math.nan,
            "max": math.nan,
            "lost": lost,
            "post_p50": math.nan,
        }
    answers = [(p.answered - p.posted) * 1000 for p in probes if p.priority == priority]
    return {
        "p50": percentile(waits, 0.5),
        "p99": percentile(waits, 0.99),
        "max": max(waits),
        "lost": lost,
        "post_p50": percentile(answers, 0.5),
    }


def quiet_for(seconds: float) -> tuple[float, float]:
    """A window of ``seconds`` with no probe: its start and end."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def campaign_rate(campaign_at: list[float], start: float, end: float) -> float:
    """Campaign calls a second the sandbox recorded between two moments."""
    return sum(1 for at in campaign_at if start <= at < end) / (end - start)


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mobile", "name"])
        for i in range(rows):
            writer.writerow([f"139{i:08d}", f"客户{i}"])


def start(directory: Path, redis_url: str, database_url: str) -> Run:
    sandbox_port, api_port = free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    api_url = f"http://127.0.0.1:{api_port}"
    env = {
        "NOTIFYQ_REDIS_URL": redis_url,
        "NOTIFYQ_DATABASE_URL": database_url,
        "NOTIFYQ_API_KEYS": KEY,
        "NOTIFYQ_VERIFY_SECRET": "bench-latency-secret",
        "NOTIFYQ_LOG_LEVEL": "INFO",  # the workers say "ready." at INFO
        "NOTIFYQ_WORKER_METRICS_PORT": "0",
        "NOTIFYQ_JUMDATA_WINDOW": "",
        **sandboxed(sandbox_url, api_url),
    }
    stack = Stack(directory, env)
    try:
        with stack.together():
            stack.sandbox(sandbox_port, "--latency-ms", PROVIDER_LATENCY_MS, "--receipt-delay", "1")
            stack.api(api_port)
            stack.worker(name="worker-a")
            stack.worker(name="worker-b")
            stack.beat()
    except BaseException:  # one not ready: stop the others, never leave them running
        stack.stop()
        raise
    return Run(stack, api_url, sandbox_url, redis_url, database_url)


def create_campaign(run: Run, csv_path: Path) -> None:
    made = run.stack.start(
        "campaign",
        "campaign",
        "create",
        "--provider",
        "ihuyi",
        "--recipients",
        str(csv_path),
        "--content",
        "尊敬的{name}，您预约的服务明天上午十点开始，请准时到达。",
        "--json",
    )
    made.process.wait(300)
    if made.process.returncode != 0:
        raise RuntimeError(f"campaign create failed:\n{made.text()[-2000:]}")


def measure(run: Run, rows: int, probes: int, csv_path: Path) -> dict[str, Any]:
    run.wait_called(run.probe_pair())  # warm: the first call of each kind pays start-ups
    run.probes.clear()
    idle = run.probe_for(probes)
    run.wait_called(idle)

    create_campaign(run, csv_path)
    deadline = time.monotonic() + 120
    while run.placed("ihuyi") < rows * UNDER_WAY + len(run.probes):
        if time.monotonic() > deadline:
            raise RuntimeError("the campaign did not get under way within 2 minutes")
        time.sleep(0.2)
    # quiet, probed, quiet again: the two quiet halves around the probes cancel the
    # campaign's own drift (a machine's load, a store growing) out of the comparison
    before = quiet_for(probes / 2)
    loaded_start = time.time()
    loaded = run.probe_for(probes)
    loaded_end = time.time()
    after = quiet_for(probes / 2)
    run.wait_called(loaded)
    calls = run.calls("ihuyi")
    leaving = {p: left_after(run.redis_url, p, loaded_start) for p in ("urgent", "normal")}
    detours = detoured(run.database_url, loaded)
    spent = stages(run.database_url, run.redis_url, loaded)
    campaign_at = [c["at"] for c in calls if str(c["number"] or "")[-11:].startswith("139")]
    quiet = sum(campaign_rate(campaign_at, *window) for window in (before, after)) / 2
    return {
        "idle": idle,
        "loaded": loaded,
        "quiet_rate": quiet,
        "loaded_rate": campaign_rate(campaign_at, loaded_start, loaded_end),
        "leaving": leaving,
        "detours": detours,
        "stages": spent,
        # the campaign must still have had rows to send until the last quiet half ended
        "outlasted": max(campaign_at) >= after[1] - 1.0,
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 10 probes")
    parser.add_argument("--rows", type=int, default=None, help="campaign rows (50,000)")
    parser.add_argument("--probes", type=int, default=None, help="probe pairs, one a second (30)")
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL server (a fresh database), not SQLite"
    )
    args = parser.parse_args()
    store = kind(args.database_url)
    rows = args.rows or (10_000 if args.quick else 50_000)
    probes = args.probes or (10 if args.quick else 30)
    with private_redis("nq-latency-") as (directory, server):
        csv_path = directory / "reminders.csv"
        write_csv(csv_path, rows)
        with fresh_database(args.database_url, directory, "notifyq") as database_url:
            run = start(directory, server.url, database_url)
            try:
                figures = measure(run, rows, probes, csv_path)
            finally:
                run.stack.stop()

    idle = {p: summary(figures["idle"], p) for p in ("urgent", "normal")}
    loaded = {p: summary(figures["loaded"], p) for p in ("urgent", "normal")}
    ratio = figures["loaded_rate"] / figures["quiet_rate"] if figures["quiet_rate"] else math.nan
    print(
        f"\nbench/latency.py: POST → call at the provider (sandbox at {PROVIDER_LATENCY_MS} ms), "
        f"{probes} probe pairs a phase, a {rows:,}-row ihuyi campaign, two workers, {store}\n"
    )
    print(
        f"{'class':8} {'phase':7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'lost':>5}"
        f" {'POST p50 ms':>12}"
    )
    for phase, table in (("idle", idle), ("loaded", loaded)):
        for priority, row in table.items():
            print(
                f"{priority:8} {phase:7} {row['p50']:9.0f} {row['p99']:9.0f} {row['max']:9.0f}"
                f" {row['lost']:5d} {row['post_p50']:12.0f}"
            )
    print(
        f"\ncampaign sends/s: {figures['quiet_rate']:.0f} without probes, "
        f"{figures['loaded_rate']:.0f} with them (ratio {ratio:.2f})"
        + ("" if figures["outlasted"] else "  [the campaign ended before the last probe]")
    )
    print(
        "loaded probes that did not go on their first try: "
        + (", ".join(f"{k} ×{n}" for k, n in figures["detours"].items()) or "none")
    )
    print(
        "loaded, p99 enqueue → call leaving the worker (tasks/latency.py): "
        + ", ".join(f"{p} {ms:.0f} ms" for p, ms in figures["leaving"].items())
    )
    print(
        "loaded, where the probes' time went (p50 / max ms): "
        + ", ".join(
            f"{k} {v['p50']:.0f} / {v['max']:.0f}"
            for k, v in figures["stages"].items()
            if k != "urgent"
        )
    )
    print("loaded codes, slowest first (ms): total = api + queue + worker + call")
    for split in figures["stages"]["urgent"][:5]:
        print("  " + "  ".join(f"{k} {v:.0f}" for k, v in split.items()))
    result = {
        "urgent_idle_p99_ms": round(idle["urgent"]["p99"]),
        "urgent_loaded_p99_ms": round(loaded["urgent"]["p99"]),
        "urgent_loaded_max_ms": round(loaded["urgent"]["max"]),
        "normal_idle_p99_ms": round(idle["normal"]["p99"]),
        "normal_loaded_p99_ms": round(loaded["normal"]["p99"]),
        "normal_loaded_max_ms": round(loaded["normal"]["max"]),
        "bulk_rate_ratio": round(ratio, 3),
        "urgent_loaded_leaving_p99_ms": round(figures["leaving"]["urgent"]),
        "normal_loaded_leaving_p99_ms": round(figures["leaving"]["normal"]),
        "bulk_sends_per_s": round(figures["quiet_rate"], 1),
        "bulk_sends_per_s_with_probes": round(figures["loaded_rate"], 1),
        "detoured_probes": sum(figures["detours"].values()),
        "lost_probes": sum(t[p]["lost"] for t in (idle, loaded) for p in t),
        "campaign_outlasted_probes": figures["outlasted"],
        "rows": rows,
        "probes": probes,
        "store": store.lower(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
