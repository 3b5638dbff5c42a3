"""How much campaign work the fan-out keeps in the broker (tasks/campaigns/pace.py): a
few seconds of what the workers were measured to take, within a floor and the high
water, on a real Redis. Times are given, not read: nothing here waits on a clock."""

from __future__ import annotations

import pytest
from redis import Redis

from tasks.campaigns.pace import FLOOR, Pace, measure, record


@pytest.fixture
def redis_client(redis_url: str) -> Redis:
    return Redis.from_url(redis_url)


def fan_outs(client: Redis, taken_per_second: int, seconds: int, lead: float) -> list[Pace]:
    """One fan-out a second against workers that take up to ``taken_per_second``
    messages a second; each fills the room it is given."""
    depth, paces = 0, []
    for second in range(seconds):
        pace = measure(client, 1000.0 + second, depth, lead=lead, high_water=2000)
        record(client, 1000.0 + second, pace, pace.room)
        paces.append(pace)
        depth = max(0, depth + pace.room - taken_per_second)
    return paces


def test_a_first_release_is_the_floor(redis_client: Redis) -> None:
    assert measure(redis_client, 1000.0, 0, lead=5, high_water=2000).room == FLOOR


def test_fast_workers_get_lead_seconds_of_their_speed_and_no_more(redis_client: Redis) -> None:
    paces = fan_outs(redis_client, taken_per_second=40, seconds=12, lead=5)
    rooms = [p.room for p in paces]
    assert rooms[:3] == sorted(rooms[:3]) and rooms[2] > FLOOR  # grows from the floor
    last = paces[-1]
    assert last.rate == pytest.approx(40, rel=0.2)
    assert last.depth + last.room <= 5 * 40 * 1.2  # five seconds of their speed ahead


def test_a_slow_provider_keeps_only_the_floor_in_redis(redis_client: Redis) -> None:
    paces = fan_outs(redis_client, taken_per_second=0, seconds=10, lead=5)
    assert all(p.depth + p.room <= FLOOR for p in paces)


def test_the_high_water_bounds_it_whatever_the_speed(redis_client: Redis) -> None:
    record(redis_client, 1000.0, Pace(rate=10_000.0, depth=0, room=0), 5000)
    assert measure(redis_client, 1001.0, 0, lead=5, high_water=100).room == 100


def test_a_stale_measure_starts_again_from_the_floor(redis_client: Redis) -> None:
    record(redis_client, 1000.0, Pace(rate=500.0, depth=0, room=0), 100)
    assert measure(redis_client, 1100.0, 0, lead=5, high_water=2000).room == FLOOR
