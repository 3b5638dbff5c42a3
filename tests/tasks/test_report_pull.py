"""The report pull's guards when a report comes more than once: twice in one page, again
in a later page, and in the pages of two pullers storing at the same moment. Each
notification moves once, with one event, whichever copy is stored first."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import httpx
import pytest
from sqlalchemy import event, func, select, text

from bench.reports import PROVIDER, fill_ledger
from harness.supervise import wait_until
from sandbox.apispace import seeded_call_id, seeded_kind
from store import Applied, NewReceipt
from store.schema import Event, Receipt, ReportPull
from tasks.reports import pull_reports
from tasks.runtime import Runtime
from tests.conftest import System

N = 40


def _finals(rt: Runtime) -> tuple[dict[str, int], int, int]:
    """The ledger's counts by status, the final events and the notifications they name."""
    E = Event.__table__
    with rt.db.read() as conn:
        events, named = conn.execute(
            select(func.count(), func.count(func.distinct(E.c.notification_id))).where(
                E.c.to_status.in_(["delivered", "undelivered"])
            )
        ).one()
    return rt.notifications.count_by_status(), events, named


def _expected(n: int) -> dict[str, int]:
    undelivered = sum(1 for i in range(n) if seeded_kind(i) != "answered")
    return {"delivered": n - undelivered, "undelivered": undelivered}


def test_reports_repeated_in_a_page_and_across_pages_move_each_row_once(
    make_system: Callable[..., System], database_url: str
) -> None:
    system = make_system(database_url, apispace_report_page="25").start(workers=0, api=False)
    rt = system.runtime
    fill_ledger(rt, N)
    seed = f"{system.sandbox_url}/_sandbox/reports/seed"
    # 0…39, then 0…39 again and 10…29 a third time: a page of 25 holds a report and its
    # repeat (24 and 0…8 of the second run), later pages repeat what earlier ones held
    for count, start in ((N, 0), (N, 0), (20, 10)):
        httpx.post(seed, json={"count": count, "start": start}, timeout=30).raise_for_status()

    assert pull_reports(rt) == 2 * N + 20  # every report read, each copy counted
    assert _finals(rt) == (_expected(N), N, N)
    with rt.db.read() as conn:
        R, P = Receipt.__table__, ReportPull.__table__
        receipts = conn.execute(select(func.count(), func.count(R.c.applied_at))).one()
        journal = conn.execute(select(func.count(), func.count(P.c.parsed_at))).one()
    assert tuple(receipts) == (N, N)  # one receipt a call, applied
    assert journal[0] == journal[1]  # every page parsed
    assert httpx.get(f"{system.sandbox_url}/_sandbox/reports", timeout=30).json()["waiting"] == 0
    assert pull_reports(rt) == 0 and _finals(rt) == (_expected(N), N, N)


def _page(calls: Sequence[int]) -> list[NewReceipt]:
    """A page of reports for the seeded calls, each twice (the repeat says the opposite:
    the first copy in a page is the one stored)."""
    page = []
    for call in calls:
        delivered = seeded_kind(call) == "answered"
        page.append(NewReceipt(PROVIDER, seeded_call_id(call), delivered, "1000"))
        page.append(NewReceipt(PROVIDER, seeded_call_id(call), not delivered, "2001"))
    return page


def _hold_the_first_store_until_the_other_waits(rt: Runtime) -> None:
    """The first puller's page statement, done, waits to commit until the other's is
    blocked on it: so the other read the rows before they moved and its statement runs
    on into what the first wrote (the race the compare-and-set and the unique key are
    for), where without it the second could simply start after the first's commit."""
    first = threading.Lock()

    def after(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("WITH named") and first.acquire(blocking=False):
            wait_until(lambda: _blocked(rt), 30, what="the other puller blocked on this one")

    event.listen(rt.db.engine, "after_cursor_execute", after)


def _blocked(rt: Runtime) -> bool:
    with rt.db.read() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE 'WITH named%'"
            )
        ).scalar_one()
    return bool(waiting)


def test_two_pullers_storing_overlapping_pages_at_once_move_each_row_once(
    runtime: Runtime,
) -> None:
    fill_ledger(runtime, N)
    pages = [_page(range(0, 30)), _page(range(10, N))]  # 10…29 in both
    start = threading.Barrier(len(pages))
    applied: list[list[Applied]] = [[] for _ in pages]
    errors: list[BaseException] = []

    def store(i: int) -> None:
        try:
            start.wait(timeout=30)
            applied[i] = runtime.receipts.record(pages[i])
        except BaseException as exc:  # said by the assertion below
            errors.append(exc)

    if runtime.db.engine.dialect.name == "postgresql":  # SQLite serialises the writers
        _hold_the_first_store_until_the_other_waits(runtime)
    threads = [threading.Thread(target=store, args=(i,)) for i in range(len(pages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    moved = [a.id for run in applied for a in run]
    assert len(moved) == len(set(moved)) == N  # each row moved by one puller, once
    assert _finals(runtime) == (_expected(N), N, N)
    assert runtime.receipts.pending() == 0


def test_two_pages_naming_the_same_calls_in_opposite_orders_are_stored_at_once_without_a_deadlock(
    runtime: Runtime,
) -> None:
    """The pull stores two pages at once on PostgreSQL (``tasks.reports.PG_LANES``): two
    pages that share references, each in the other's order, must not wait on each other
    in a circle (PostgreSQL would break it by failing one page, after a second). Three
    rounds, as the two inserts must overlap for a circle to form."""
    if runtime.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises the writers")
    calls = 3000  # for calls the ledger does not know: the inserts are the race
    for round_ in range(3):
        refs = [f"NOCALL{round_}-{call:06d}" for call in range(calls)]
        pages = [
            [NewReceipt(PROVIDER, ref, True, "1000") for ref in refs[::step]] for step in (1, -1)
        ]
        start = threading.Barrier(len(pages))
        errors: list[BaseException] = []

        def store(
            page: list[NewReceipt], start: threading.Barrier, errors: list[BaseException]
        ) -> None:
            try:
                start.wait(timeout=30)
                runtime.receipts.record(page)
            except BaseException as exc:  # said by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=store, args=(page, start, errors)) for page in pages]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
    with runtime.db.read() as conn:
        stored = conn.execute(select(func.count()).select_from(Receipt.__table__)).scalar_one()
    assert stored == 3 * calls
