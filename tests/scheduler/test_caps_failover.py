"""Caps across a Redis fail-over: the caps' master dies with writes its replica never
received, the Sentinel promotes the replica, and still no number is called beyond its
caps at the provider (scheduler/caps_floor.py).

Real processes: a master, its replica and a Sentinel (``redis-server``), the provider
emulators over HTTP, the store on SQLite; the dispatch runs in this process, as a
worker runs it (``tasks.dispatch.dispatch_ids``), so each round is over when it returns.
The replica is cut off as a partition cuts it (tests/services.py ``Replicated``): frozen,
and the master's link to it dropped, so the third call of each number is recorded on
the master alone. The test checks that the promoted replica really lacks those
attempts before it checks that nothing went beyond the caps.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from scheduler.caps import cap_slot, decode_log
from store import NewNotification
from tasks.dispatch import dispatch_ids
from tests.conftest import System
from tests.services import Replicated, replicated, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.chaos,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]

NUMBERS = [f"+86139{i:08d}" for i in range(10)]
#: jumdata 3 a day, ihuyi 3 a minute (and its 1 a second, which its emulator enforces)
CAPS = {"jumdata": "3/day", "ihuyi": "1/second;3/minute;10/day"}
MARGIN = 0.5
#: how far the clock moves between rounds: past ihuyi's 1/second, well inside a minute
STEP = 1 + MARGIN + 0.5


@pytest.fixture
def caps_redis(tmp_path: Path) -> Iterator[Replicated]:
    with replicated(tmp_path / "caps", "nqcaps") as started:
        yield started


def _round(system: System) -> list[int]:
    """The clock moved on by a step, then one notification per number and provider,
    dispatched; their ids."""
    system.advance(STEP)
    rt = system.runtime
    stored = rt.notifications.insert(
        [
            NewNotification(provider="jumdata", to=n, template="1001", params=["李四"])
            for n in NUMBERS
        ]
        + [NewNotification(provider="ihuyi", to=n, content="您的快递已到。") for n in NUMBERS]
    )
    ids = [s.id for s in stored]
    dispatch_ids(rt, ids)
    return ids


def _attempts(system: System) -> dict[tuple[str, str], list[float]]:
    """The provider's side: each number's send requests per provider, by arrival time."""
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for call in system.ledger():
        if call["provider"] in CAPS and call["number"] and call["api"] != "report":
            found[(call["provider"], call["number"])].append(call["at"])
    return found


def _beyond_caps(attempts: dict[tuple[str, str], list[float]]) -> list[Any]:
    """(provider, number, times) of every number called more than 3 times in one day
    (jumdata) or in any 60 s (ihuyi), on the provider's clock."""
    over = []
    for (provider, number), times in attempts.items():
        window = 86400 if provider == "jumdata" else 60
        ordered = sorted(times)
        if any(ordered[i + 3] - ordered[i] < window for i in range(len(ordered) - 3)):
            over.append((provider, number, ordered))
    return over


def test_no_number_goes_beyond_its_caps_after_a_replica_that_missed_its_last_calls_takes_over(
    make_system, caps_redis: Replicated
) -> None:
    system: System = make_system(
        NOTIFYQ_CAPS_REDIS_URL=caps_redis.url,
        NOTIFYQ_JUMDATA_CAPS=CAPS["jumdata"],
        NOTIFYQ_IHUYI_CAPS=CAPS["ihuyi"],
        cap_margin=str(MARGIN),
        clock_control="true",
    )
    system.sandbox("--receipt-delay", "3600")
    wait_until(lambda: system.ledger() is not None, 30, what="the sandbox")

    for _ in range(2):
        assert set(system.statuses(_round(system)).values()) == {"sent"}
    master = redis.Redis.from_url(caps_redis.master.url)
    assert master.wait(1, 10_000) == 1  # the replica has the first two calls of each

    caps_redis.cut_off_replica()
    assert set(system.statuses(_round(system)).values()) == {"sent"}
    caps_redis.fail_over()

    promoted = redis.Redis.from_url(caps_redis.replica.url)
    for provider in CAPS:
        for number in NUMBERS:  # the third call of each is gone with the master
            _, logged = decode_log(promoted.hget(*cap_slot(provider, number)))
            assert len(logged) == 2, (provider, number, logged)

    after = _round(system) + _round(system)
    statuses = system.statuses(after)
    rows = {i: system.runtime.notifications.get(i) for i in after}
    assert set(statuses.values()) == {"deferred"}
    assert {rows[i].reason for i in after} == {"cap:jumdata:3/day", "cap:ihuyi:3/minute"}
    attempts = _attempts(system)
    assert _beyond_caps(attempts) == []
    assert sorted(len(times) for times in attempts.values()) == [3] * 2 * len(NUMBERS)
