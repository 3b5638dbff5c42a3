"""At most once in the store, on SQLite and (when configured) PostgreSQL: a cron run made once
however many fan-outs race for it; a ``sent`` row with no receipt ends, saying why; a
receipt that comes for an ``unknown`` row repairs it, and the event says so."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from store import Change, Expect, NewNotification, NewReceipt, Status
from store.campaigns import IMPORTING, SCHEDULED, CampaignRow, CampaignStore
from tasks.campaigns.release import fan_out
from tasks.maintenance import end_unreceipted
from tasks.runtime import Runtime


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime(receipt_timeout=3600)


def _sent(rt: Runtime, ref: str, *, at: float) -> int:
    (n,) = rt.notifications.insert(
        [NewNotification(provider="ihuyi", to="+8613800138000", content="您好")]
    )
    rt.notifications.transition(
        [Change(n.id, Status.SENDING, expect=Expect.row(rt.notifications.get(n.id)))], now=at
    )
    rt.notifications.transition(
        [
            Change(
                n.id,
                Status.SENT,
                expect=Expect.row(rt.notifications.get(n.id)),
                values={"provider_ref": ref, "next_attempt_at": at + 3600},
            )
        ],
        now=at,
    )
    return n.id


def _cron_campaign(store: CampaignStore, recipients: int) -> int:
    campaign_id = store.create(
        name="daily",
        provider="ihuyi",
        content="每日提醒",
        options={},
        cron="0 9 * * *",
        next_run_at=time.time() - 1,
    )
    rows = [CampaignRow(i, f"+86138{i:08d}", "每日提醒", ()) for i in range(recipients)]
    store.add_recipients(campaign_id, rows)
    store.set_status(campaign_id, SCHEDULED, expect=[IMPORTING])
    return campaign_id


def test_fan_outs_at_once_materialise_one_cron_run(runtime: Runtime) -> None:
    """Four fan-outs at the same moment (no lock between them: beat's lock is one at a
    time, but a second beat, or a lock that expired mid-run, can run two)."""
    store = CampaignStore(runtime.db, runtime.notifications)
    campaign_id = _cron_campaign(store, 50)
    barrier = threading.Barrier(4)
    started: list[int] = []

    def fan_out_now() -> None:
        barrier.wait()
        started.append(fan_out(runtime)["started"])

    threads = [threading.Thread(target=fan_out_now) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(started) == [0, 0, 0, 1]
    assert sum(store.counts(campaign_id).values()) == 50
    assert store.get(campaign_id).runs == 1


class Crash(Exception):
    """The process dies between the run's two statements."""


def test_a_run_that_breaks_between_its_steps_leaves_no_rows_and_the_campaign_scheduled(
    runtime: Runtime,
) -> None:
    store = CampaignStore(runtime.db, runtime.notifications)
    campaign_id = _cron_campaign(store, 5)
    seen = store.get(campaign_id)

    def crash(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO NOTIFICATIONS"):
            raise Crash  # after `scheduled → running` was written, before the rows

    event.listen(runtime.db.engine, "before_cursor_execute", crash)
    try:
        with pytest.raises(Crash):
            store.start_run(seen, time.time(), None)
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", crash)
    after = store.get(campaign_id)
    assert (after.status, after.runs) == (SCHEDULED, 0)
    assert sum(store.counts(campaign_id).values()) == 0
    assert store.start_run(after, time.time(), None) == 5


def test_a_sent_row_without_a_receipt_ends_unknown_after_the_receipt_timeout(
    runtime: Runtime,
) -> None:
    now = time.time()
    old = _sent(runtime, "r-old", at=now - 3601)
    fresh = _sent(runtime, "r-fresh", at=now - 10)
    ended = end_unreceipted(runtime, now=now)
    assert [a.id for a in ended] == [old]
    row = runtime.notifications.get(old)
    assert row.status == Status.UNKNOWN
    assert row.reason == "receipt-timeout: no receipt within 1h"
    assert runtime.notifications.get(fresh).status == Status.SENT
    assert end_unreceipted(runtime, now=now) == []  # once


def test_a_receipt_for_an_unknown_row_repairs_it_and_says_so(runtime: Runtime) -> None:
    now = time.time()
    nid = _sent(runtime, "r-late", at=now - 3601)
    end_unreceipted(runtime, now=now)
    applied = runtime.receipts.record([NewReceipt("ihuyi", "r-late", delivered=True, code="2")])
    assert [(a.from_status, a.to) for a in applied] == [(Status.UNKNOWN, Status.DELIVERED)]
    row = runtime.notifications.get(nid)
    assert row.status == Status.DELIVERED and row.next_attempt_at is None
    last = runtime.notifications.events(nid)[-1]
    assert "after unknown" in last.reason
    assert last.detail["repaired"] == "unknown"
    # the same receipt again changes nothing
    assert runtime.receipts.record([NewReceipt("ihuyi", "r-late", delivered=True, code="2")]) == []
