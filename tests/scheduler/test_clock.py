"""The one clock (scheduler/clock.py) on a real Redis: Redis's time, plus an offset only
when clock control is on; the deferred set's "due" and the runtime's ``redis_now()`` follow
it, so a test can move every process's time forward instead of sleeping."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from config.settings import Settings
from scheduler.clock import OFFSET_KEY, Clock, ClockControlOff
from scheduler.deferred import DeferredSet
from tasks.runtime import Runtime
from tests.services import redis_now


def test_without_control_it_is_redis_time_and_ignores_any_offset(client: redis.Redis) -> None:
    client.set(OFFSET_KEY, 3600)
    clock = Clock(client)
    before = redis_now(client)
    now = clock.now()
    assert before <= now <= redis_now(client)
    assert clock.offset() == 0.0 and clock.keys == []
    with pytest.raises(ClockControlOff):
        clock.advance(1)
    with pytest.raises(ClockControlOff):
        clock.reset()


def test_with_control_it_adds_the_offset_and_advance_accumulates(client: redis.Redis) -> None:
    clock = Clock(client, control=True)
    before = redis_now(client)
    assert before <= clock.now() <= redis_now(client), "no offset set: Redis's time"
    assert clock.advance(100) == 100.0
    assert clock.advance(0.5) == 100.5
    assert clock.offset() == 100.5
    before = redis_now(client)
    now = clock.now()
    assert before + 100.5 <= now <= redis_now(client) + 100.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.reset()
    assert clock.offset() == 0.0
    assert clock.now() <= redis_now(client)


def test_advance_to_reads_the_moment_at_once_and_never_goes_back(client: redis.Redis) -> None:
    clock = Clock(client, control=True)
    target = redis_now(client) + 7200
    clock.advance_to(target)
    assert target <= clock.now() <= redis_now(client) + 7200 + 1
    offset = clock.offset()
    clock.advance_to(target - 3600)
    assert clock.offset() == offset, "a moment already past moves nothing"


def test_every_client_on_the_same_redis_reads_the_same_time(redis_url: str) -> None:
    one = Clock(redis.Redis.from_url(redis_url), control=True)
    two = Clock(redis.Redis.from_url(redis_url), control=True)
    one.advance(86400)
    assert abs(two.now() - one.now()) < 1.0
    assert two.now() - redis_now(two.client) > 86399


def test_the_deferred_set_releases_on_the_clock_it_is_given(client: redis.Redis) -> None:
    clock = Clock(client, control=True)
    controlled = DeferredSet(client, clock=clock)
    plain = DeferredSet(client, key="nq:deferred:plain")
    now = clock.now()
    controlled.add([(1, now + 3600), (2, now + 7200)])
    plain.add([(1, now + 3600)])
    assert controlled.pop_due(10) == []
    clock.advance(3600)
    assert controlled.pop_due(10) == [1], "due on the moved clock"
    assert plain.pop_due(10) == [], "a set without the clock stays on Redis's own time"
    clock.advance(3600)
    assert controlled.pop_due(10) == [2]


def test_the_runtime_reads_now_from_the_clock_and_honours_the_setting(
    redis_url: str, tmp_path: Path
) -> None:

    def runtime(control: bool) -> Runtime:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            redis_url=redis_url,
            database_url=f"sqlite:///{tmp_path / 'clock.db'}",
            clock_control=control,
        )
        return Runtime.build(settings)

    controlled, plain = runtime(True), runtime(False)
    try:
        controlled.clock.advance(600)
        assert controlled.redis_now() - redis_now(controlled.redis) > 599
        assert abs(plain.redis_now() - redis_now(plain.redis)) < 1
    finally:
        controlled.close()
        plain.close()
