"""The durable "not before" set on a real Redis: only what is due comes out, two pumps
never release one notification twice, and a failed hand-over loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
import redis

from scheduler.deferred import DeferredSet, pump
from tests.services import redis_now


@pytest.fixture
def deferred(client: redis.Redis) -> DeferredSet:
    return DeferredSet(client)


def test_only_due_members_come_out_earliest_first(
    deferred: DeferredSet, client: redis.Redis
) -> None:
    now = redis_now(client)
    deferred.add([(1, now - 5), (2, now + 60), (3, now - 10), (4, now + 3600), (5, 0.0)])
    assert len(deferred) == 5
    assert deferred.pop_due(10) == [5, 3, 1]
    assert deferred.pop_due(10) == []
    assert len(deferred) == 2
    assert deferred.when(2) == pytest.approx(now + 60)
    assert deferred.when(1) is None


def test_pop_due_takes_at_most_the_limit(deferred: DeferredSet, client: redis.Redis) -> None:
    now = redis_now(client)
    deferred.add((i, now - 100 + i) for i in range(10))
    assert deferred.pop_due(3) == [0, 1, 2]
    assert deferred.pop_due(3) == [3, 4, 5]
    assert len(deferred) == 4


def test_a_large_release_comes_out_whole(deferred: DeferredSet) -> None:
    """More members than Lua can unpack at once (about 8,000) in one call."""
    deferred.add((i, 1.0) for i in range(9_000))
    released = deferred.pop_due(9_000)
    assert sorted(released) == list(range(9_000))
    assert len(deferred) == 0


def test_adding_again_moves_the_time_and_remove_forgets(
    deferred: DeferredSet, client: redis.Redis
) -> None:
    now = redis_now(client)
    deferred.add([(7, now + 60)])
    deferred.add([(7, now - 1)])
    assert len(deferred) == 1
    deferred.remove([7])
    deferred.remove([])
    deferred.add([])
    assert deferred.pop_due(10) == []


def test_the_pump_releases_due_ones_in_batches_up_to_most(
    deferred: DeferredSet, client: redis.Redis
) -> None:
    now = redis_now(client)
    deferred.add((i, now - 1) for i in range(25))
    deferred.add([(100, now + 60)])
    batches: list[list[int]] = []
    assert pump(deferred, lambda ids: batches.append(list(ids)), batch=10, most=22) == 22
    assert [len(b) for b in batches] == [10, 10, 2]
    assert pump(deferred, lambda ids: batches.append(list(ids)), batch=10, most=100) == 3
    assert sorted(i for b in batches for i in b) == list(range(25))
    assert len(deferred) == 1  # the one not due yet


def test_two_pumps_at_once_never_release_one_member_twice(
    client: redis.Redis, redis_url: str
) -> None:
    count = 3_000
    DeferredSet(client).add((i, 1.0) for i in range(count))
    released: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def run() -> None:
        own = redis.Redis.from_url(redis_url)
        mine = DeferredSet(own)
        start.wait()

        def publish(ids: Sequence[int]) -> None:
            with lock:
                released.extend(ids)

        while pump(mine, publish, batch=7, most=count):
            pass
        own.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(released) == count
    assert sorted(released) == list(range(count))


def test_a_failed_publish_puts_the_batch_back_as_due(
    deferred: DeferredSet, client: redis.Redis
) -> None:
    now = redis_now(client)
    deferred.add((i, now - 30 + i) for i in range(6))
    calls = 0

    def broken(ids: Sequence[int]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        pump(deferred, broken, batch=2, most=100)
    # the first batch went out; the failed one is back, due now; the rest never left
    assert len(deferred) == 4
    assert deferred.when(2) == 0.0 and deferred.when(3) == 0.0
    delivered: list[int] = []
    assert pump(deferred, delivered.extend, batch=10, most=100) == 4
    assert sorted(delivered) == [2, 3, 4, 5]
