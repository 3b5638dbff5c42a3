"""The fault points of docs/duplicates.md: between a provider's answer and its commit,
Redis goes away, the database refuses for a while, or the worker is killed. The outcome lands, or the row
ends ``unknown`` — and the number is never called a second time for it.

The first two drive one dispatch phase by phase (``tasks.dispatch.dispatch_steps``) with
the fault struck right after the ``answered`` phase; the third kills a real worker
process while the provider holds its call.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from providers.base import Message, Reply
from providers.http import LATE, Failure, HttpSettings, Transport
from store import NewNotification
from tasks.dispatch import Report, dispatch_steps
from tasks.publish import publish_dispatch
from tests.conftest import System
from tests.services import RedisServer, wait_until

_numbers = iter(range(1, 10_000))


def _notification(system: System, number: str | None = None) -> tuple[int, str]:
    number = number or f"+86137{next(_numbers):08d}"
    (stored,) = system.runtime.notifications.insert(
        [NewNotification(provider="ihuyi", to=number, content="您的快递已到。")]
    )
    return stored.id, number.removeprefix("+86")


def _requests(system: System, national: str) -> list[dict[str, Any]]:
    return [c for c in system.ledger("ihuyi") if c["number"] == national]


def _run_to(steps: Iterator[str], phase: str) -> None:
    for reached in steps:
        if reached == phase:
            return
    raise AssertionError(f"the dispatch ended before {phase}")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendfsync=None)
    server.start()
    yield server
    server.stop(hard=True)


@pytest.fixture
def phased(make_system, own_redis: RedisServer) -> System:
    # a generous cap margin: these tests are about what follows an answer, and a call
    # held up past its margin on a busy machine would (rightly) not be sent at all
    system: System = make_system(NOTIFYQ_REDIS_URL=own_redis.url, cap_margin="10")
    system.sandbox("--receipt-delay", "3600")
    wait_until(lambda: system.ledger() is not None, 30, what="the sandbox")
    return system


def test_redis_gone_after_the_answer_still_records_it_and_calls_no_one_again(
    phased: System, own_redis: RedisServer
) -> None:
    nid, national = _notification(phased)
    steps = dispatch_steps(phased.runtime, [nid], Report())
    _run_to(steps, "answered")
    own_redis.stop(hard=True)  # caps block, circuit, deferred set: all out of reach now
    for _ in steps:  # records the outcome; whatever needs Redis is logged, not raised
        pass
    assert phased.status(nid) == "sent"

    own_redis.start()
    phased.runtime.redis.flushall()  # a restart that lost everything, claims included
    for _ in dispatch_steps(phased.runtime, [nid], Report()):  # a redelivery
        pass
    assert phased.status(nid) == "sent"
    assert len(_requests(phased, national)) == 1


def test_a_database_that_refuses_for_a_while_gets_the_answer_once_it_accepts(
    phased: System,
) -> None:
    nid, national = _notification(phased)
    steps = dispatch_steps(phased.runtime, [nid], Report())
    _run_to(steps, "answered")
    refusals = {"left": 3}
    engine = phased.runtime.db.engine

    def locked(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # the driver's own error, as a writer holding the lock past the busy timeout gives
        if statement.lstrip().upper().startswith("UPDATE NOTIFICATIONS") and refusals["left"]:
            refusals["left"] -= 1
            raise sqlite3.OperationalError("database is locked")

    event.listen(engine, "before_cursor_execute", locked)
    try:
        for _ in steps:
            pass
    finally:
        event.remove(engine, "before_cursor_execute", locked)
    assert refusals["left"] == 0, "the fault was never struck"
    assert phased.status(nid) == "sent"
    steps_taken = [str(e.to_status.value) for e in phased.runtime.notifications.events(nid)]
    assert steps_taken == ["sending", "sent"]
    assert len(_requests(phased, national)) == 1


@pytest.mark.slow
def test_a_worker_killed_while_its_call_is_held_leaves_unknown_and_redeliveries_call_no_one(
    make_system,
) -> None:
    system: System = make_system(sending_timeout="5", sweep_interval="1", sweep_grace="600")
    system.start(workers=1, concurrency=4, beat=True, api=False)
    system.sandbox_config(timeout_rate=1.0, timeout_hold=120)  # placed, then held
    nid, national = _notification(system)
    publish_dispatch(system.runtime.celery, [nid], batch=1)
    wait_until(lambda: _requests(system, national), 60, interval=0.1, what="the call")
    worker = next(p for p in system.stack.procs if p.name.startswith("worker"))
    worker.kill(signal.SIGKILL)  # the answer never comes back to anyone
    system.sandbox_config(timeout_rate=0.0)
    successor = system.stack.worker("--concurrency", "4")
    for _ in range(2):  # the broker redelivers the lost message, twice
        publish_dispatch(system.runtime.celery, [nid], batch=1)

    system.wait_for([nid], {"unknown"}, timeout=60)

    def redelivered() -> bool:
        lines = successor.text().splitlines()
        return sum("notifyq.dispatch[" in line and "succeeded" in line for line in lines) >= 2

    # both redeliveries have run on the new worker (each a no-op) before we count
    wait_until(redelivered, 60, interval=0.2, what="the redeliveries to run")
    assert len(_requests(system, national)) == 1
    steps = [str(e.to_status.value) for e in system.runtime.notifications.events(nid)]
    assert steps == ["sending", "unknown"]


# -- a call must leave within the cap margin of its admission -----------------------------


def test_a_call_that_cannot_get_a_connection_before_its_deadline_is_not_sent(
    phased: System,
) -> None:
    """One connection, held by a slow call: the next call waits for it past its deadline
    and is not sent at all (LATE) — the provider never sees it."""
    phased.sandbox_config(latency_ms=1500)
    transport = Transport(HttpSettings(max_connections=1, pool_size=1))
    provider = phased.runtime.providers["ihuyi"]
    try:
        calls = [
            provider.build_send(
                [Message(id=i, to=f"+8613600000{i:03d}", content="您好")], time.time()
            )
            for i in (1, 2)
        ]
        deadline = time.monotonic() + 0.5
        slow, late = transport.perform_all(
            calls, may_write=lambda asked: [time.monotonic() < deadline for _ in asked]
        )
    finally:
        transport.close()
        phased.sandbox_config(latency_ms=0)
    assert isinstance(slow, Reply)
    assert isinstance(late, Failure) and (late.kind, late.sent) == (LATE, False)
    assert [c["number"] for c in phased.ledger("ihuyi")] == ["13600000001"]


def test_a_call_held_up_past_its_margin_is_admitted_again_when_it_can_leave(
    make_system, own_redis: RedisServer
) -> None:
    system: System = make_system(NOTIFYQ_REDIS_URL=own_redis.url, cap_margin="1")
    system.sandbox("--receipt-delay", "3600")
    taken, national = _notification(system)
    rt = system.runtime

    free = dispatch_steps(rt, [taken], Report())
    _run_to(free, "sending")
    # The `sending` write (or the wait for a connection) outlasted the whole margin: this
    # pause IS that delay; nothing is asserted about what did not happen during it.
    time.sleep(1.2)
    for _ in free:  # admitted again as it leaves (the number is free), then sent
        pass
    assert system.status(taken) == "sent"
    assert len(_requests(system, national)) == 1

    # another notification held up past its whole window (1 s + 1 s margin): another
    # attempt takes its number meanwhile, so admitted again it must not go — back to
    # waiting, the attempt uncounted, the provider never asked
    held_id, held_national = _notification(system)
    number = rt.notifications.get(held_id).to
    held = dispatch_steps(rt, [held_id], Report())
    _run_to(held, "sending")
    time.sleep(2.2)  # the delay again: the slot it took ages out of the 1/second cap
    other = rt.caps.hit("ihuyi", number, rt.policies["ihuyi"].caps)
    assert other.allowed  # someone else's attempt, now
    for _ in held:
        pass
    row = rt.notifications.get(held_id)
    assert (row.status.value, row.attempts, row.reason) == ("deferred", 0, "late:ihuyi")
    assert _requests(system, held_national) == []
    # the other attempt's slot stands; this one's was given back (not counted twice)
    refused = rt.caps.hit("ihuyi", number, rt.policies["ihuyi"].caps)
    assert not refused.allowed and refused.cap == "1/second"
