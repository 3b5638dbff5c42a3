"""Calling windows and jumdata's 3 a day, end to end: a window closed now defers
to the exact moment it opens and sends then; jumdata's fourth call to a number is never
attempted — the rest wait for the first call of the day to age out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis

from scheduler.caps import cap_slot
from scheduler.clock import Clock
from store import Status
from tasks.enqueue import enqueue
from tests.conftest import System
from tests.scheduler.test_caps import unpack
from tests.services import wait_until

pytestmark = pytest.mark.slow


#: how far ahead the window opens: no start-up, however slow, reaches it; the test moves
#: the system's clock there (scheduler/clock.py) once it has seen nothing go before it
AHEAD = 3600
#: where the clock is moved first, seconds before the opening
BEFORE = 90


def window_opening_at(moment: float, zone: str = "Asia/Shanghai") -> tuple[str, float]:
    """A window that opens at ``moment`` (to the second), closed for the two ``AHEAD``s
    before it (so from now until it opens)."""
    opening = datetime.fromtimestamp(int(moment), UTC)
    local = opening.astimezone(ZoneInfo(zone))
    closing = local - timedelta(seconds=2 * AHEAD)
    return f"{local:%H:%M:%S}-{closing:%H:%M:%S}", opening.timestamp()


def test_a_window_that_excludes_now_defers_to_its_opening_then_sends(
    make_system, redis_url: str
) -> None:
    window, opening = window_opening_at(Clock(redis.Redis.from_url(redis_url)).now() + AHEAD)
    system: System = make_system(ihuyi_window=window, clock_control="true")
    system.start(workers=1, concurrency=4, beat=True)
    sent = enqueue("ihuyi", "13800138000", content="会议提醒：明早9点。", runtime=system.runtime)
    system.wait_for([sent.id], {"deferred"}, timeout=60)
    row = system.runtime.notifications.get(sent.id)
    assert row.reason == "window:ihuyi"
    assert abs(row.next_attempt_at - opening) < 0.01, "deferred to the opening itself"

    # Close to the opening: two pump passes that began after the clock moved there release
    # nothing, and nothing is called. The clock runs on while they do, so it is moved to
    # further before the opening than the wait for them may last (BEFORE > 60 s).
    system.advance_to(opening - BEFORE)
    system.wait_runs("notifyq.release_due", 2, timeout=60)
    assert system.now() < opening - 1, "still before the opening (and dispatch's 1 s slack)"
    assert system.status(sent.id) == "deferred"
    assert system.ledger("ihuyi") == [], "nothing is called while the window is closed"

    system.advance_to(opening)
    system.wait_for([sent.id], {"delivered"}, timeout=60)
    (call,) = system.ledger("ihuyi")
    assert call["placed"]
    # Dispatch stamps its status changes on the system's clock: every attempt (a call not
    # sent in time after its admission is withdrawn and admitted again, so a busy machine
    # may show two) was made at or after the opening.
    sending = [
        e.at for e in system.runtime.notifications.events(sent.id) if e.to_status == Status.SENDING
    ]
    assert sending and all(at >= opening for at in sending), (sending, opening)


def test_jumdata_never_attempts_a_fourth_call_in_a_day(make_system) -> None:
    system: System = make_system()
    system.start(
        workers=1,
        concurrency=4,
        beat=True,
        sandbox_args=("--receipt-delay", "0.3", "--jumdata-window", ""),
    )
    before = system.now()
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
    # The wait is the day's first admission (our cap log, Redis's clock, whole ms) plus a
    # day plus the cap margin; the admission came after the enqueue and before its arrival.
    margin = system.settings.cap_margin
    raw = system.runtime.redis.hget(*cap_slot("jumdata", "+8613800138000"))
    admitted, blocked = unpack(raw)
    assert len(admitted) == 3 and blocked is None
    frees = admitted[0] / 1000 + 86400 + margin
    first = min(c["at"] for c in calls)
    for row in waiting:
        assert row.reason == "cap:jumdata:3/day"
        assert abs(row.next_attempt_at - frees) <= 0.0015, (
            "waits for the first call of the day to age out"
        )
        assert before + 86400 + margin <= row.next_attempt_at <= first + 86400 + margin
