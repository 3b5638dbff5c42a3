"""Issue 11's fault points: between a provider's answer and its commit, Redis goes away,
the database refuses for a while, or the worker is killed. The outcome lands, or the row
ends ``unknown`` — and the number is never called a second time for it.

The first two drive one dispatch phase by phase (``tasks.dispatch.dispatch_steps``) with
the fault struck right after the ``answered`` phase; the third kills a real worker
process while the provider holds its call.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tasks.dispatch import Report, dispatch_steps
from tasks.publish import publish_dispatch
from tests.conftest import System
from tests.services import RedisServer, wait_until
from worker.store import NewNotification

_numbers = iter(range(1, 10_000))


def _notification(system: System) -> tuple[int, str]:
    number = f"+86137{next(_numbers):08d}"
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
    system: System = make_system(NOTIFYQ_REDIS_URL=own_redis.url)
    system.stack.sandbox(system.sandbox_port, "--receipt-delay", "3600")
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
