"""The daily quota script (scheduler/quota.lua) on a real Redis: all or none, given back
only to the day it was taken from, one count per name, gone an hour after midnight."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis

from scheduler.quota import DailyQuota, QuotaDecision, quota_key

ZONE = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def quota(redis_url: str) -> DailyQuota:
    return DailyQuota(redis.Redis.from_url(redis_url), ZONE)


def test_a_take_is_all_or_none_and_says_when_the_day_ends(quota: DailyQuota) -> None:
    assert quota.take("t", "billing", 5, 3).allowed
    refused = quota.take("t", "billing", 5, 3)
    assert (refused.allowed, refused.used) == (False, 3)
    midnight = datetime.fromtimestamp(refused.resets_at, ZONE)
    assert (midnight.hour, midnight.minute, midnight.second) == (0, 0, 0)
    assert 0 < refused.resets_at - datetime.now(ZONE).timestamp() <= 86400
    assert quota.take("t", "billing", 5, 2).used == 5
    assert not quota.take("t", "billing", 5, 1).allowed
    assert quota.take("t", "shop", 5, 5).allowed  # another name counts for itself


def test_what_is_given_back_goes_to_the_day_it_was_taken_from(
    quota: DailyQuota, redis_url: str
) -> None:
    taken = quota.take("t", "billing", 4, 4)
    quota.give_back("t", "billing", 4, taken, 3)
    assert quota.take("t", "billing", 4, 3).used == 4
    # units taken yesterday are not today's to give back
    yesterday = QuotaDecision(True, 4, taken.day - 1, taken.resets_at - 86400)
    quota.give_back("t", "billing", 4, yesterday, 4)
    assert not quota.take("t", "billing", 4, 1).allowed
    # the count never goes below nothing, and a refused take gives nothing back
    quota.give_back("t", "billing", 4, QuotaDecision(False, 4, taken.day, 0), 4)
    assert not quota.take("t", "billing", 4, 1).allowed
    before = time.time()
    ttl = redis.Redis.from_url(redis_url).pttl(quota_key("t", "billing"))
    # an hour past midnight (Redis counts the TTL from its whole millisecond)
    assert 0 < ttl <= (taken.resets_at + 3600 - before) * 1000 + 1
