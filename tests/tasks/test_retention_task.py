"""``notifyq.prune``, the beat task: one run at a time (a Redis lock), and a run deletes
what ended before the retention on the runtime's clock, keeping what is recent."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from store import Change, Expect, NewNotification, Status
from store.retention import DAY
from tasks.retention import prune_task
from tasks.runtime import Runtime, set_runtime


@pytest.fixture
def current(runtime: Runtime) -> Iterator[Runtime]:
    set_runtime(runtime)
    yield runtime
    set_runtime(None)


def _ended(rt: Runtime, at: float) -> int:
    (made,) = rt.notifications.insert(
        [NewNotification(provider="ihuyi", to="+8613800138000")], now=at
    )
    row = rt.notifications.get(made.id)
    rt.notifications.transition([Change(made.id, Status.CANCELLED, Expect.row(row))], now=at)
    return made.id


def test_the_beat_task_prunes_once_at_a_time(current: Runtime) -> None:
    now = time.time()
    old, recent = _ended(current, now - 91 * DAY), _ended(current, now - 89 * DAY)
    lock = current.redis.lock("nq:lock:prune", timeout=60)
    assert lock.acquire(blocking=False)  # another run holds it
    try:
        assert prune_task() == {"skipped": 1}
        assert current.notifications.get(old) is not None
    finally:
        lock.release()
    done = prune_task()
    assert (done["notifications"], done["events"]) == (1, 1)
    assert current.notifications.get(old) is None
    assert current.notifications.get(recent) is not None
