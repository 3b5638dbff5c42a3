"""Provider-wide throughput (GCRA on Redis's clock): a burst, then even spacing; batches
take several at once, all or none."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import redis

from scheduler.limits import Cap, parse_caps
from scheduler.rates import RateDecision, RateLimiter
from tests.services import sleep_until

#: GCRA keeps fractional milliseconds; the script rounds now down and retry_at up
MS = 0.003


@pytest.fixture
def rates(client: redis.Redis) -> RateLimiter:
    return RateLimiter(client)


def taken_then_refused(
    rates: RateLimiter, key: str, caps: Sequence[Cap], allowed: int
) -> tuple[RateDecision, RateDecision]:
    """Take ``allowed`` times (each admitted), then once more (refused, with a time to
    retry): the first decision and the refusal."""
    taken = [rates.take(key, caps) for _ in range(allowed)]
    assert all(d.allowed for d in taken)
    refused = rates.take(key, caps)
    assert not refused.allowed and refused.retry_at is not None
    return taken[0], refused


def burst_then_one(
    rates: RateLimiter, client: redis.Redis, key: str, caps: Sequence[Cap], burst: int
) -> tuple[RateDecision, RateDecision, RateDecision]:
    """``burst`` taken at once and the next refused until one interval (a second, at these
    tests' rates) after the first; at that moment one more taken and the next refused:
    the first decision and the two refusals."""
    first, refused = taken_then_refused(rates, key, caps, burst)
    assert refused.retry_at == pytest.approx(first.now + 1.0, abs=MS)
    sleep_until(client, refused.retry_at)
    _, again = taken_then_refused(rates, key, caps, 1)
    return first, refused, again


def test_a_burst_of_the_amount_goes_at_once_then_one_per_interval(
    rates: RateLimiter, client: redis.Redis
) -> None:
    # 5 per 5 s (one a second): each step below has a second to happen in, which a busy
    # machine's scheduling delays (tens of ms) never eat up
    _, sixth, next_one = burst_then_one(
        rates, client, "provider:ihuyi", parse_caps("5/5 seconds"), 5
    )
    # from the sixth on: one send a second, no more
    assert sixth.retry_at is not None
    assert next_one.retry_at == pytest.approx(sixth.retry_at + 1.0, abs=MS)


def test_a_batch_takes_its_whole_quantity_or_nothing(rates: RateLimiter) -> None:
    ten = parse_caps("10/second")
    assert rates.take("provider:apispace", ten, 4).allowed
    assert rates.take("provider:apispace", ten, 4).allowed
    refused = rates.take("provider:apispace", ten, 4)  # 12 > 10: none of it
    assert not refused.allowed
    assert refused.retry_at is not None and refused.retry_at - refused.now <= 0.2 + MS
    assert rates.take("provider:apispace", ten, 2).allowed  # exactly the 10
    assert not rates.take("provider:apispace", ten, 1).allowed


def test_a_refusal_by_one_rate_takes_nothing_from_the_others(
    rates: RateLimiter, client: redis.Redis
) -> None:
    # had the refused fourth spent a per-minute slot, the fourth taken after the wait
    # would be refused
    first, _, fifth = burst_then_one(rates, client, "k", parse_caps("3/3 seconds;4/minute"), 3)
    assert fifth.retry_at == pytest.approx(first.now + 15, abs=MS)


def test_a_batch_bigger_than_a_burst_goes_alone_and_the_next_waits_it_out(
    rates: RateLimiter, client: redis.Redis
) -> None:
    """Without this a batch of 12 under 5/second would be refused for ever."""
    five = parse_caps("5/second")
    big = rates.take("provider:ihuyi", five, 12)
    assert big.allowed
    # 12 sends at 200 ms each leave 2.4 s of backlog; one more makes 2.6 s, and it may
    # go when no more than one window (1 s) of that stands
    after = rates.take("provider:ihuyi", five)
    assert not after.allowed
    assert after.retry_at == pytest.approx(big.now + 1.6, abs=MS)
    another_big = rates.take("provider:ihuyi", five, 12)
    assert not another_big.allowed
    assert another_big.retry_at == pytest.approx(big.now + 2.4, abs=MS)
    # the state outlives the backlog, so nobody sneaks in when it would have expired
    assert client.pttl("nq:rate:provider:ihuyi") > 2_400


def test_keys_are_independent(rates: RateLimiter) -> None:
    one = parse_caps("1/minute")
    assert rates.take("provider:a", one).allowed
    assert not rates.take("provider:a", one).allowed
    assert rates.take("provider:b", one).allowed


def test_no_rate_or_nothing_to_take_is_always_allowed(
    rates: RateLimiter, client: redis.Redis
) -> None:
    assert rates.take("provider:x", ()) == RateDecision(True, now=0.0)
    assert rates.take("provider:x", parse_caps("1/minute"), 0) == RateDecision(True, now=0.0)
    assert client.dbsize() == 0


def test_bulk_fills_only_its_share_of_a_burst_and_the_rest_is_left_for_urgent(
    rates: RateLimiter,
) -> None:
    # 10 per 10 s: one a second, so nothing below frees up between two takes
    ten = parse_caps("10/10 seconds")
    bulk = [rates.take("provider:apispace-sms", ten, reach=0.8) for _ in range(10)]
    assert [d.allowed for d in bulk] == [True] * 8 + [False] * 2  # bulk stops at its 80%
    refused = bulk[8]
    assert refused.retry_at == pytest.approx(bulk[0].now + 1.0, abs=MS)
    urgent = [rates.take("provider:apispace-sms", ten) for _ in range(3)]
    assert [d.allowed for d in urgent] == [True, True, False]  # the last 20% of the burst
    # what urgent took, bulk waits for: its next slot moved two intervals further on
    later = rates.take("provider:apispace-sms", ten, reach=0.8)
    assert not later.allowed
    assert later.retry_at == pytest.approx(bulk[0].now + 3.0, abs=MS)


def test_a_reach_outside_a_burst_is_refused(rates: RateLimiter) -> None:
    with pytest.raises(ValueError, match="reach"):
        rates.take("provider:x", parse_caps("1/second"), reach=0)
