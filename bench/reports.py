"""Report ingest: how many APISpace voice reports a second the pull takes into the store.

One machine, SQLite (the default store; PostgreSQL with ``--database-url``), the provider
sandbox over real HTTP. For each page size:

1. the ledger gets N notifications ``sent`` (inserted and moved queued → sending →
   sent through the store, in bulk, as a worker leaves them), with the call ids
   ``seeded_call_id(0 … N-1)`` as their provider references;
2. the sandbox's pull-and-delete report store is seeded with a report for each of those
   calls (every tenth unanswered) and 1% more for calls the ledger does not know;
3. ``tasks.reports.pull_reports(runtime)`` — the code the beat task runs — is called
   until the store is empty, and timed: every page pulled, its raw body journalled and
   committed, parsed, its receipts stored, and the ``sent`` rows moved to
   ``delivered``/``undelivered``, one event each.

Then it checks that every notification is final with one event for it, that the
receipts for unknown calls are kept (unapplied), that every journalled page is parsed,
and that the sandbox holds nothing. The issue's target is 20,000 reports a second.

Prints a table, then as its last line one JSON object:
``{"reports_per_s", "n", "page_size", "seconds", "by_page": {...}, ...}``
(``reports_per_s`` at the default page size, 1,000).

    python bench/reports.py            # 200,000 reports, pages of 1,000 and 10,000
    python bench/reports.py --quick    # 20,000: the same figures in under 30 s
    python bench/reports.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.store import add_database_url, fresh_database, kind  # noqa: E402
from config.settings import Settings  # noqa: E402
from harness.signals import install_sigterm_as_interrupt  # noqa: E402
from harness.supervise import RedisServer, Stack, free_port  # noqa: E402
from sandbox.apispace import seeded_call_id, seeded_kind  # noqa: E402
from sandbox.state import SandboxConfig  # noqa: E402
from store import Change, Expect, NewNotification, Status  # noqa: E402
from store.schema import Event, Receipt, ReportPull  # noqa: E402
from tasks.reports import pull_reports  # noqa: E402
from tasks.runtime import Runtime  # noqa: E402

PROVIDER = "apispace-voice"
CHUNK = 5_000
TARGET = 20_000


@dataclass
class Run:
    page: int
    n: int
    unknown: int
    setup_seconds: float
    seconds: float
    pulls: int

    @property
    def per_s(self) -> float:
        return (self.n + self.unknown) / self.seconds


def fill_ledger(rt: Runtime, n: int) -> None:
    """N notifications ``sent`` under the seeded call ids, in bulk through the store."""
    store = rt.notifications
    for start in range(0, n, CHUNK):
        numbers = range(start, min(n, start + CHUNK))
        drafts = [
            NewNotification(PROVIDER, f"+8613{i % 10**9:09d}", template="123456", params=("x",))
            for i in numbers
        ]
        ids = [row.id for row in store.insert(drafts)]
        store.transition(
            [
                Change(i, Status.SENDING, expect=Expect.any_of(Status.QUEUED), count_attempt=True)
                for i in ids
            ]
        )
        store.transition(
            [
                Change(
                    i,
                    Status.SENT,
                    expect=Expect.any_of(Status.SENDING),
                    values={"provider_ref": seeded_call_id(call)},
                )
                for i, call in zip(ids, numbers, strict=True)
            ]
        )


def check(rt: Runtime, sandbox: str, n: int, unknown: int) -> None:
    """Everything the ingest promises, or an exception saying what is missing."""
    counts = rt.notifications.count_by_status()
    undelivered = sum(1 for i in range(n) if seeded_kind(i) != "answered")
    expected = {"delivered": n - undelivered, "undelivered": undelivered}
    if counts != expected:
        raise RuntimeError(f"ledger: {counts}, expected {expected}")
    E, R, P = (t.__table__ for t in (Event, Receipt, ReportPull))
    with rt.db.read() as conn:
        finals = conn.execute(
            select(func.count(), func.count(func.distinct(E.c.notification_id))).where(
                E.c.to_status.in_(["delivered", "undelivered"])
            )
        ).one()
        receipts = conn.execute(
            select(func.count(), func.count(R.c.applied_at)).where(R.c.provider == PROVIDER)
        ).one()
        pulls = conn.execute(
            select(func.count(), func.count(P.c.parsed_at), func.sum(P.c.reports))
        ).one()
    if tuple(finals) != (n, n):
        raise RuntimeError(f"final events: {tuple(finals)}, expected one for each of {n}")
    if tuple(receipts) != (n + unknown, n):
        raise RuntimeError(
            f"receipts (all, applied): {tuple(receipts)}, expected {n + unknown}, {n}"
        )
    if pulls[0] != pulls[1] or pulls[2] != n + unknown:
        raise RuntimeError(f"journal (pulls, parsed, reports): {tuple(pulls)}")
    waiting = httpx.get(f"{sandbox}/_sandbox/reports", timeout=30).json()["waiting"]
    if waiting:
        raise RuntimeError(f"the sandbox still holds {waiting} reports")


def one_run(
    directory: Path, redis_url: str, sandbox: str, n: int, page: int, server_url: str | None
) -> Run:
    with fresh_database(server_url, directory, f"page{page}") as database_url:
        return run_on(database_url, redis_url, sandbox, n, page)


def run_on(database_url: str, redis_url: str, sandbox: str, n: int, page: int) -> Run:
    unknown = n // 100
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        redis_url=redis_url,
        database_url=database_url,
        apispace_token=SandboxConfig().apispace_token,
        apispace_report_base_url=sandbox,
        apispace_report_page=page,
    )
    rt = Runtime.build(settings)
    try:
        started = time.perf_counter()
        fill_ledger(rt, n)
        seeded = httpx.post(
            f"{sandbox}/_sandbox/reports/seed", json={"count": n + unknown, "start": 0}, timeout=120
        )
        seeded.raise_for_status()
        setup = time.perf_counter() - started

        pulls = 0
        started = time.perf_counter()
        while True:
            pull_reports(rt)
            pulls += 1
            if not httpx.get(f"{sandbox}/_sandbox/reports", timeout=30).json()["waiting"]:
                break
        seconds = time.perf_counter() - started
        check(rt, sandbox, n, unknown)
    finally:
        rt.close()
    return Run(page, n, unknown, setup, seconds, pulls)


def main() -> None:
    install_sigterm_as_interrupt()  # SIGTERM stops what this run started, as Ctrl-C does
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 reports, under 30 s")
    parser.add_argument("-n", type=int, help="notifications (default 200,000; quick 20,000)")
    parser.add_argument(
        "--pages",
        default="1000,10000",
        help="page sizes to try, comma-separated (first: the default)",
    )
    add_database_url(parser)
    args = parser.parse_args()
    store = kind(args.database_url)
    n = args.n or (20_000 if args.quick else 200_000)
    pages = [int(p) for p in args.pages.split(",")]

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="nq-bench-reports-") as tmp:
        directory = Path(tmp)
        server = RedisServer(directory / "redis", appendfsync=None)
        server.start()
        stack = Stack(directory, {"PYTHONPATH": str(ROOT)})
        port = free_port()
        try:
            stack.sandbox(port)
            for page in pages:
                sandbox = f"http://127.0.0.1:{port}"
                runs.append(one_run(directory, server.url, sandbox, n, page, args.database_url))
        finally:
            stack.stop()
            server.stop()

    print(
        f"APISpace voice report pull into {store}: {n:,} sent notifications + {n // 100:,} "
        f"reports for unknown calls, the sandbox over HTTP, tasks.reports.pull_reports"
    )
    print(
        f"{'page size':>10} {'reports':>9} {'seconds':>8} {'reports/s':>10} {'vs 20k/s':>9} {'setup s':>8}"
    )
    for run in runs:
        print(
            f"{run.page:10d} {run.n + run.unknown:9d} {run.seconds:8.2f} {run.per_s:10.0f} "
            f"{run.per_s / TARGET:8.0%} {run.setup_seconds:8.1f}"
        )
    print(
        "checked: every notification delivered/undelivered with one event, unknown calls' receipts kept, journal parsed, sandbox empty"
    )
    default = runs[0]
    figures: dict[str, Any] = {
        "reports_per_s": round(default.per_s, 1),
        "n": default.n + default.unknown,
        "notifications": default.n,
        "unknown_calls": default.unknown,
        "page_size": default.page,
        "seconds": round(default.seconds, 3),
        "target_per_s": TARGET,
        "vs_target": round(default.per_s / TARGET, 3),
        "by_page": {str(r.page): round(r.per_s, 1) for r in runs},
        "best_reports_per_s": round(max(r.per_s for r in runs), 1),
        "store": store.lower(),
        "quick": args.quick,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
