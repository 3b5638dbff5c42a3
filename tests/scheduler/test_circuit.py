"""The circuit breaker, on a real Redis: one open per outage, a single half-open probe,
doubling only after a failed probe."""

from __future__ import annotations

import redis

from scheduler.circuit import CircuitBreaker


def test_a_burst_of_account_errors_opens_the_circuit_once(redis_url: str) -> None:
    breaker = CircuitBreaker(redis.Redis.from_url(redis_url), cooldown=60)
    first = breaker.open("ihuyi", "4051 balance", now=1000.0)
    for _ in range(20):  # every call in flight when the balance ran out
        assert breaker.open("ihuyi", "4051 balance", now=1000.5) == first
    assert first == 1060.0
    assert not breaker.state("ihuyi", now=1030.0).allowed


def test_after_the_cooldown_exactly_one_probe_goes_and_its_success_closes_it(
    redis_url: str,
) -> None:
    breaker = CircuitBreaker(redis.Redis.from_url(redis_url), cooldown=60)
    breaker.open("jumdata", "603", now=1000.0)
    probe = breaker.state("jumdata", now=1061.0)
    assert probe.allowed and probe.probe
    others = breaker.state("jumdata", now=1061.0)
    assert not others.allowed and others.retry_at is not None
    breaker.close("jumdata")
    assert breaker.state("jumdata", now=1062.0).allowed
    assert not breaker.is_open("jumdata")


def test_a_failed_probe_reopens_for_twice_as_long(redis_url: str) -> None:
    breaker = CircuitBreaker(redis.Redis.from_url(redis_url), cooldown=60)
    breaker.open("itniotech", "-10", now=1000.0)
    assert breaker.state("itniotech", now=1061.0).probe
    assert breaker.open("itniotech", "-10", now=1061.5) == 1061.5 + 120
