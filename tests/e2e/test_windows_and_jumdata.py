"""Calling windows and jumdata's 3 a day, end to end (issue 4): a window closed now defers
to the exact moment it opens and sends then; jumdata's fourth call to a number is never
attempted — the rest wait for the first call of the day to age out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tasks.enqueue import enqueue
from tests.conftest import System
from tests.services import wait_until

pytestmark = pytest.mark.slow


def window_opening_in(seconds: int, zone: str = "Asia/Shanghai") -> tuple[str, datetime]:
    opening = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)
    local = opening.astimezone(ZoneInfo(zone))
    closing = local - timedelta(minutes=5)
    return f"{local:%H:%M:%S}-{closing:%H:%M:%S}", opening


def test_a_window_that_excludes_now_defers_to_its_opening_then_sends(make_system) -> None:
    window, opening = window_opening_in(6)
    system: System = make_system(ihuyi_window=window)
    system.start(workers=1, concurrency=4, beat=True)
    sent = enqueue("ihuyi", "13800138000", content="会议提醒：明早9点。", runtime=system.runtime)
    system.wait_for([sent.id], {"deferred"}, timeout=20)
    row = system.runtime.notifications.get(sent.id)
    assert row.reason == "window:ihuyi"
    assert abs(row.next_attempt_at - opening.timestamp()) < 0.01, "deferred to the opening itself"
    assert system.ledger("ihuyi") == [], "nothing is called while the window is closed"
    system.wait_for([sent.id], {"delivered"}, timeout=30)
    (call,) = system.ledger("ihuyi")
    assert call["at"] >= opening.timestamp()


def test_jumdata_never_attempts_a_fourth_call_in_a_day(make_system) -> None:
    system: System = make_system()
    system.start(
        workers=1,
        concurrency=4,
        beat=True,
        sandbox_args=("--receipt-delay", "0.3", "--jumdata-window", ""),
    )
    ids = [
        enqueue(
            "jumdata", "13800138000", template="1001", params=[f"第{i}期"], runtime=system.runtime
        ).id
        for i in range(5)
    ]
    wait_until(
        lambda: sum(1 for c in system.ledger("jumdata") if c["placed"]) >= 3, 30, what="3 calls"
    )
    system.wait_for(ids, {"delivered", "deferred"}, timeout=30)
    calls = [c for c in system.ledger("jumdata") if c["api"] == "send"]
    assert len(calls) == 3 and all(c["placed"] for c in calls), (
        "never a 4th attempt: it would extend the block"
    )
    waiting = [system.runtime.notifications.get(i) for i in ids if system.status(i) == "deferred"]
    assert len(waiting) == 2
    first = min(c["at"] for c in calls)
    for row in waiting:
        assert row.reason == "cap:jumdata:3/day"
        assert abs(row.next_attempt_at - (first + 86400)) <= 1.0, (
            "waits for the first call of the day to age out"
        )
