"""Many workers, one recipient, never past a cap — and what waits,
waits for exactly the moment its cap frees.

2 worker processes × 20 threads, 300 ihuyi notifications to 5 numbers, each number
written three ways. The sandbox counts arrivals like ihuyi does; its ledger must show
no placed call past 1/second, 3/minute or 10/day for any number and no 4080/4081/4082
refusal; every notification not sent must be ``deferred`` with ``next_attempt_at`` the
exact moment its tightest cap frees: computed from the admissions our cap log recorded
(on Redis's clock), each window widened by the cap margin — and never later than that
moment computed from the sandbox's arrivals (an admission precedes its arrival).

The 1-second windows pass on the real clock. The minute and day windows are not slept
through: once dispatch is quiet, the test moves every clock — the workers' (Redis's
offset, scheduler/clock.py) and the sandbox's (its ``clock_offset``) — to the moment the
first waiting row is due, and the caps, the deferred set and the provider's own counters
all see that minute pass; what was held back must then go out, and the checks above are
made again at every quiet point.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import pytest

from scheduler.caps import cap_slot
from store import Status
from tasks.enqueue import enqueue_many
from tasks.requests import SendRequest
from tests.conftest import System
from tests.scheduler.test_caps import unpack
from tests.services import wait_until

NUMBERS = ["13800138000", "13900139001", "13700137002", "13600136003", "13500135004"]
CAPS = ((1.0, 1), (60.0, 3), (86400.0, 10))


def spellings(national: str) -> list[str]:
    spaced = f"+86 {national[:3]} {national[3:7]} {national[7:]}"
    return [national, spaced, f"86{national}"]


def arrivals_by_number(system: System) -> dict[str, list[float]]:
    placed: dict[str, list[float]] = defaultdict(list)
    for call in system.ledger("ihuyi"):
        assert call["code"] not in ("4080", "4081", "4082"), (
            f"the provider refused a call for a cap: {call['code']}"
        )
        if call["placed"]:
            placed[call["number"]].append(call["at"])
    return {number: sorted(times) for number, times in placed.items()}


def calls_each(system: System, count: int) -> Callable[[], dict[str, list[float]] | None]:
    """A predicate: every one of the five numbers has ``count`` calls, from ONE read of
    the ledger (two reads raced the calls: ``all()`` of an empty first read is true)."""

    def check() -> dict[str, list[float]] | None:
        seen = arrivals_by_number(system)
        return seen if len(seen) == 5 and all(len(t) >= count for t in seen.values()) else None

    return check


def assert_within_caps(times: list[float]) -> None:
    for window, amount in CAPS:
        for i in range(len(times) - amount):
            assert times[i + amount] - times[i] >= window, (
                f"{amount + 1} calls within {times[i + amount] - times[i]:.3f}s (cap {amount}/{window:g}s)"
            )


def frees_at(times: list[float], margin: float = 0.0) -> float:
    """The first moment another call to this number would pass every cap (each window
    widened by ``margin``)."""
    moment = 0.0
    for window, amount in CAPS:
        if len(times) >= amount:
            moment = max(moment, times[len(times) - amount] + window + margin)
    return moment


def admissions(system: System, national: str) -> list[float]:
    """The attempts our cap log holds for this number (epoch s, Redis's clock, ms)."""
    raw = system.runtime.redis.hget(*cap_slot("ihuyi", f"+86{national}"))
    times_ms, blocked = unpack(raw) if raw else ([], None)
    assert blocked is None, "the provider never blocked a number"
    return [t / 1000 for t in times_ms]


def check_waiting_rows(
    system: System, ids: list[int], arrivals: dict[str, list[float]]
) -> dict[str, int]:
    margin = system.settings.cap_margin
    admitted = {national: admissions(system, national) for national in NUMBERS}
    for national, times in admitted.items():
        assert len(times) == len(arrivals.get(national, [])), "one admission per placed call"
        assert_within_caps(times)
    counts: dict[str, int] = defaultdict(int)
    for notification_id in ids:
        row = system.runtime.notifications.get(notification_id)
        status = str(row.status.value)
        counts[status] += 1
        if status in ("sent", "delivered", "undelivered"):
            continue
        assert status == "deferred", f"#{notification_id} is {status}"
        assert row.reason.startswith("cap:ihuyi:"), row.reason
        national = row.to.removeprefix("+86")
        expected = frees_at(admitted[national], margin)
        # the cap log and the retry moment are both whole milliseconds
        assert abs(row.next_attempt_at - expected) <= 0.0015, (
            f"#{notification_id} waits until {row.next_attempt_at:.3f}, its cap frees at "
            f"{expected:.3f} ({row.reason})"
        )
        latest = frees_at(arrivals.get(national, []), margin)
        assert row.next_attempt_at <= latest + 0.0015, (
            f"#{notification_id} waits past {latest:.3f}, the moment from the provider's "
            "arrivals (each admission precedes its arrival)"
        )
    return dict(counts)


def quiet(system: System, ids: list[int]) -> None:
    """Until nothing is in flight (no row queued, sending or retrying) and no deferred row
    is due: then no admission can have happened since any row was deferred (an admission
    needs a cap to free, which would have made those rows due), so every row's wait was
    computed from the cap log as it stands — the moment to compare the two."""

    def settled() -> bool:
        now = system.now()
        with system.runtime.db.read() as conn:
            rows = system.runtime.notifications.load(conn, ids)
        statuses = [(Status(row.status), row.next_attempt_at) for row in rows]
        return not any(
            status in (Status.QUEUED, Status.SENDING, Status.RETRYING)
            or (status is Status.DEFERRED and due <= now)
            for status, due in statuses
        )

    wait_until(settled, 60, interval=0.2, what="dispatch to settle")


def first_due(system: System, ids: list[int]) -> float:
    """The earliest moment a deferred row waits for (on the system's clock)."""
    with system.runtime.db.read() as conn:
        rows = system.runtime.notifications.load(conn, ids)
    return min(
        row.next_attempt_at
        for row in rows
        if Status(row.status) is Status.DEFERRED and row.next_attempt_at is not None
    )


def check_quiet_point(system: System, ids: list[int], each: int) -> dict[str, int]:
    """Every number has had exactly ``each`` calls, none past a cap, and every row still
    waiting waits for the exact moment its cap frees."""
    quiet(system, ids)
    arrivals = arrivals_by_number(system)
    assert {n: len(t) for n, t in arrivals.items()} == dict.fromkeys(NUMBERS, each), (
        f"{ {n: len(t) for n, t in arrivals.items()} }\n{system.stack.report()}"
    )
    for times in arrivals.values():
        assert_within_caps(times)
    return check_waiting_rows(system, ids, arrivals)


@pytest.mark.slow
@pytest.mark.timeout(600)  # a busy machine's start-up and dispatch; the windows are moved
def test_two_workers_never_exceed_ihuyi_caps_and_defer_to_the_exact_moment(make_system) -> None:
    system: System = make_system(sweep_grace="600", sending_timeout="120", clock_control="true")
    with system.stack.together():
        system.sandbox("--receipt-delay", "1")
        system.stack.api(system.api_port)
        for _ in range(2):
            system.stack.worker("--concurrency", "20")
        system.stack.beat()

    requests = [
        SendRequest(
            provider="ihuyi",
            to=spellings(NUMBERS[i % 5])[(i // 5) % 3],
            content=f"您的订单{i}已发货。",
        )
        for i in range(300)
    ]
    results = enqueue_many(requests, runtime=system.runtime)
    ids = [r.id for r in results]
    assert len(set(ids)) == 300
    rows = {system.runtime.notifications.get(i).to for i in ids}
    assert rows == {f"+86{n}" for n in NUMBERS}, (
        "every spelling of a number normalises to one E.164"
    )

    # First quiet point: each number has had its 3 calls of the first minute.
    wait_until(calls_each(system, 3), 60, interval=0.5, what="3 calls per number")
    counts = check_quiet_point(system, ids, 3)
    assert counts.get("deferred") == 300 - 15

    # Each following minute: move every clock to the moment the first waiting row is due
    # (nothing is due before it, so nothing could have gone out in the minute skipped);
    # each number then has its next 3 calls, 1 second apart on the real clock — until its
    # 10 of the day, after which everything else waits a day.
    for each in (6, 9, 10):
        system.advance_to(first_due(system, ids))
        wait_until(calls_each(system, each), 60, interval=0.5, what=f"{each} calls per number")
        counts = check_quiet_point(system, ids, each)
        assert counts["deferred"] == 300 - 5 * each

    assert all(
        system.runtime.notifications.get(i).reason in ("cap:ihuyi:10/day",)
        for i in ids
        if system.status(i) == "deferred"
    )
