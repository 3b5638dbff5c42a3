"""The caps' arithmetic against a reference: the ``limits`` library's moving window, on a
simulated clock (our script takes the time as an argument; ``limits`` reads a travelling
``time.time``), with no margin — the setting that leaves rounding nowhere to hide.

An attempt is recorded rounded up to the ms and decisions read the clock rounded down
(rounding both down would let a call pass, with a margin of 0, up to 1 ms before its
window had gone by): ours may be up to 1 ms stricter than the reference, never looser. And a slot taken and then refunded is as if never
taken.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from scheduler.caps import CapLimiter, cap_slot
from scheduler.limits import parse_caps

RULES = "1/second;3/minute"
NUMBER = "+8613800138000"
#: a fixed start, in µs: early in the epoch so that a float of seconds still holds every µs
#: exactly enough for the reference's float clock (at today's epoch it keeps ~0.25 µs)
START_US = 1_000_000_000_000

#: gaps between attempts: around the 1 s and 1 min boundaries (to the µs), and anything
gaps = st.lists(
    st.one_of(
        st.integers(999_000, 1_001_000),
        st.integers(59_999_000, 60_001_000),
        st.integers(0, 2_000_000),
    ),
    min_size=2,
    max_size=14,
)


@pytest.fixture
def caps(client: redis.Redis) -> Iterator[CapLimiter]:
    yield CapLimiter(client, margin=0)


class Reference:
    """``limits``' moving windows, all of them passing or none recorded."""

    def __init__(self) -> None:
        self.items = parse_many(RULES)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self) -> bool:
        if all(self.limiter.test(item, "n") for item in self.items):
            recorded = [self.limiter.hit(item, "n") for item in self.items]
            if not all(recorded):
                # ``limits`` tests and hits on float seconds with different comparisons:
                # on a window's very edge its test passes and its hit refuses, so its
                # history no longer says what it decided
                raise ReferenceUndecided
            return True
        return False


class ReferenceUndecided(Exception):
    """The reference contradicted itself (a call exactly on a window's edge)."""


def within_caps(times_us: list[int]) -> bool:
    """At most ``amount`` attempts in any ``window``, measured on the true times."""
    for cap in parse_caps(RULES):
        window = cap.window * 1_000_000
        for i in range(len(times_us) - cap.amount):
            if times_us[i + cap.amount] - times_us[i] < window:
                return False
    return True


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=gaps)
def test_no_margin_never_lets_a_call_through_before_the_reference_does(
    caps: CapLimiter, client: redis.Redis, steps: list[int]
) -> None:
    client.hdel(*cap_slot("ihuyi", NUMBER))
    rules = parse_caps(RULES)
    reference = Reference()
    at = START_US
    allowed_at: list[int] = []
    with time_machine.travel(at / 1e6, tick=False) as clock:
        for gap in steps:
            at += gap
            clock.move_to(at / 1e6)
            ours = caps.hit("ihuyi", NUMBER, rules, at=at / 1e6)
            if ours.allowed:
                allowed_at.append(at)
            try:
                theirs = reference.hit()
            except ReferenceUndecided:
                theirs = None
            if ours.allowed == theirs:
                continue
            if theirs is None:
                pass  # nothing to compare: what we allowed is checked below all the same
            elif ours.allowed:
                assert _tie(allowed_at, at), (
                    f"allowed at +{at - START_US} µs where the reference refuses"
                )
            else:
                # stricter only by the rounding: the slot frees within 1 ms
                assert ours.retry_at is not None
                assert round(ours.retry_at * 1e6) - at <= 1_000, (ours, at)  # whole µs
            # the two histories now differ: check what we have, then start both afresh
            assert within_caps(allowed_at)
            client.hdel(*cap_slot("ihuyi", NUMBER))
            reference = Reference()
            allowed_at = []
    assert within_caps(allowed_at)


def _tie(allowed_at: list[int], at: int) -> bool:
    """The reference refuses a call exactly one window after the decisive one (its test
    is strict); "at most N in any window" allows it, and so do we."""
    for cap in parse_caps(RULES):
        earlier = allowed_at[:-1]
        if len(earlier) >= cap.amount and at - earlier[-cap.amount] == cap.window * 1_000_000:
            return True
    return False


def test_a_refunded_slot_is_as_if_never_taken(caps: CapLimiter) -> None:
    rules = parse_caps("1/second;3/minute")
    first = caps.hit("ihuyi", NUMBER, rules, at=START_US / 1e6)
    taken = caps.hit("ihuyi", NUMBER, rules, at=(START_US + 2_000_000) / 1e6)
    assert first.allowed and taken.allowed
    assert caps.refund("ihuyi", NUMBER, taken)
    # the refunded attempt no longer holds the 1/second cap …
    assert caps.hit("ihuyi", NUMBER, rules, at=(START_US + 2_000_500) / 1e6).allowed
    # … and counts nowhere: the minute holds exactly the two attempts made
    third = caps.hit("ihuyi", NUMBER, rules, at=(START_US + 4_000_000) / 1e6)
    assert third.allowed
    refused = caps.hit("ihuyi", NUMBER, rules, at=(START_US + 6_000_000) / 1e6)
    assert not refused.allowed and refused.cap == "3/minute"
    assert refused.retry_at == pytest.approx((START_US + 60_000_000) / 1e6)
    # a refund of something already gone is a no-op, never a second removal
    assert not caps.refund("ihuyi", NUMBER, taken)


def test_a_refund_keeps_a_providers_block(caps: CapLimiter) -> None:
    rules = parse_caps("3/minute")
    taken = caps.hit("ihuyi", NUMBER, rules)
    until = caps.block("ihuyi", NUMBER, 120)
    assert caps.refund("ihuyi", NUMBER, taken)
    refused = caps.hit("ihuyi", NUMBER, rules)
    assert not refused.allowed and refused.retry_at == pytest.approx(until)
