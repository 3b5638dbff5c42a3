"""Per-number caps on a real Redis: sliding windows, exact retry times, the provider's
own block, many workers at once, and the packed log that keeps a number small."""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from itertools import islice, pairwise

import phonenumbers
import pytest
import redis

from scheduler.caps import (
    BUCKETS,
    LAYOUT_KEY,
    PROVIDER_BLOCK,
    SWEEP_SLICE,
    CapCheck,
    CapLimiter,
    Decision,
    cap_slot,
    legacy_key,
)
from scheduler.limits import Cap, parse_caps
from tasks.maintenance import sweep_caps
from tasks.runtime import Runtime
from tasks.verifications import CAP_NAMESPACE
from tests.services import redis_now, sleep_until

IHUYI = parse_caps("1/second;3/minute;10/day")
NUMBER = "+8613800138000"


@pytest.fixture
def caps(client: redis.Redis) -> CapLimiter:
    """No margin: the windows are exactly as written, so times can be checked exactly."""
    return CapLimiter(client, margin=0)


# -- the packed log, as caps.lua lays it out (to craft states and read them back) --------


def pack(times_ms: list[int], blocked_until_ms: int | None = None) -> bytes:
    out = b"" if blocked_until_ms is None else b"\xff" + blocked_until_ms.to_bytes(6, "big")
    if times_ms:
        out += times_ms[0].to_bytes(6, "big")
        for before, after in pairwise(times_ms):
            delta = after - before
            while delta >= 128:
                out += bytes([128 + delta % 128])
                delta //= 128
            out += bytes([delta])
    return out


def unpack(raw: bytes) -> tuple[list[int], int | None]:
    blocked = None
    if raw[:1] == b"\xff":
        blocked, raw = int.from_bytes(raw[1:7], "big"), raw[7:]
    if not raw:
        return [], blocked
    times = [int.from_bytes(raw[:6], "big")]
    delta, scale = 0, 1
    for byte in raw[6:]:
        if byte >= 128:
            delta += (byte - 128) * scale
            scale *= 128
        else:
            times.append(times[-1] + delta + byte * scale)
            delta, scale = 0, 1
    return times, blocked


def log_of(client: redis.Redis, number: str = NUMBER, provider: str = "ihuyi") -> list[int]:
    raw = client.hget(*cap_slot(provider, number))
    return unpack(raw)[0] if raw else []


# -- sliding windows and exact retry times ---------------------------------------------------


def test_the_third_call_in_a_second_waits_exactly_until_the_first_ages_out(
    caps: CapLimiter, client: redis.Redis
) -> None:
    rules = parse_caps("2/second;3/5 seconds")
    first = caps.hit("ihuyi", NUMBER, rules)
    assert caps.hit("ihuyi", NUMBER, rules).allowed
    third = caps.hit("ihuyi", NUMBER, rules)
    assert first.allowed and not third.allowed
    assert third.cap == "2/second"
    assert third.retry_at == pytest.approx(first.now + 1.0, abs=1e-6)

    sleep_until(client, third.retry_at)
    again = caps.hit("ihuyi", NUMBER, rules)
    assert again.allowed
    # now the second cap is the one that holds: three in 5 s, freed by the first's age
    fourth = caps.hit("ihuyi", NUMBER, rules)
    assert not fourth.allowed
    assert fourth.cap == "3/5 seconds"
    assert fourth.retry_at == pytest.approx(first.now + 5.0, abs=1e-6)


def test_an_attempt_counts_for_exactly_one_window(caps: CapLimiter, client: redis.Redis) -> None:
    rules = parse_caps("1/second")
    now_ms = int(redis_now(client) * 1000)
    client.hset(*cap_slot("ihuyi", NUMBER), pack([now_ms - 500]))
    refused = caps.hit("ihuyi", NUMBER, rules)
    assert not refused.allowed
    assert refused.retry_at == (now_ms - 500 + 1000) / 1000
    client.hset(*cap_slot("ihuyi", NUMBER), pack([now_ms - 1000]))
    assert caps.hit("ihuyi", NUMBER, rules).allowed


def test_the_ihuyi_second_call_within_a_second_is_deferred_by_one_second_plus_margin(
    client: redis.Redis,
) -> None:
    caps = CapLimiter(client, margin=0.5)
    first = caps.hit("ihuyi", NUMBER, IHUYI)
    second = caps.hit("ihuyi", NUMBER, IHUYI)
    assert first.allowed and not second.allowed
    assert second.cap == "1/second"
    assert second.retry_at == pytest.approx(first.now + 1.5, abs=1e-6)
    # the attempt is recorded rounded up to the ms and decisions read the clock rounded
    # down, so the wait may be 1 ms longer than the window, never shorter
    assert 0 < round((second.retry_at - second.now) * 1000) <= 1501  # whole ms, not floats


def test_fourth_call_in_a_minute_is_deferred_to_when_first_ages_out(client: redis.Redis) -> None:
    caps = CapLimiter(client, margin=0.25)
    rules = parse_caps("3/minute;10/day")
    decisions = [caps.hit("ihuyi", NUMBER, rules) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[3].cap == "3/minute"
    assert decisions[3].retry_at == pytest.approx(decisions[0].now + 60.25, abs=1e-6)
    # asking again changes nothing: the same moment
    assert caps.hit("ihuyi", NUMBER, rules).retry_at == decisions[3].retry_at


def test_the_day_cap_holds_all_ten_attempts(caps: CapLimiter, client: redis.Redis) -> None:
    """Ten in a day, even when a shorter cap with a smaller amount comes first."""
    rules = parse_caps("5/second;10/day")
    now_ms = int(redis_now(client) * 1000)
    earlier = [now_ms - 1_500 + 100 * i for i in range(5)]  # all more than a second ago
    client.hset(*cap_slot("ihuyi", NUMBER), pack(earlier))
    latest_five = [caps.hit("ihuyi", NUMBER, rules) for _ in range(5)]
    assert all(d.allowed for d in latest_five)
    eleventh = caps.hit("ihuyi", NUMBER, rules)
    # both caps refuse; the later moment (the day cap's) is the one to wait for
    assert (eleventh.allowed, eleventh.cap) == (False, "10/day")
    assert eleventh.retry_at == (earlier[0] + 86_400_000) / 1000
    assert log_of(client)[:5] == earlier
    assert len(log_of(client)) == 10


def test_a_refused_attempt_is_not_recorded(caps: CapLimiter, client: redis.Redis) -> None:
    # the second attempt ages out 2.5 s after the first: time enough, on a busy machine,
    # between the first's ageing out and the check that the second still holds
    rules = parse_caps("2/5 seconds")
    now_ms = int(redis_now(client) * 1000)
    first, second = now_ms - 4_800, now_ms - 2_300
    client.hset(*cap_slot("ihuyi", NUMBER), pack([first, second]))
    before = client.hget(*cap_slot("ihuyi", NUMBER))
    refusals = [caps.hit("ihuyi", NUMBER, rules) for _ in range(5)]
    assert not any(d.allowed for d in refusals)
    assert {d.retry_at for d in refusals} == {(first + 5_000) / 1000}
    assert client.hget(*cap_slot("ihuyi", NUMBER)) == before

    sleep_until(client, (first + 5_000) / 1000)
    assert caps.hit("ihuyi", NUMBER, rules).allowed
    # the next one is held by the second real attempt, not by any refused one
    after = caps.hit("ihuyi", NUMBER, rules)
    assert not after.allowed
    assert after.retry_at == (second + 5_000) / 1000


def test_no_caps_means_always_allowed_and_nothing_stored(
    caps: CapLimiter, client: redis.Redis
) -> None:
    assert caps.hit("itniotech", NUMBER, ()) == Decision(True, now=0.0)
    assert caps.hit_many([CapCheck("itniotech", NUMBER, ())]) == [Decision(True, now=0.0)]
    assert client.dbsize() == 0


# -- keys: per provider and per E.164 number ---------------------------------------------


def test_a_number_is_a_field_of_its_providers_bucket_whose_hash_tag_is_the_bucket() -> None:
    bucket = zlib.crc32(b"8613800138000") % BUCKETS
    assert cap_slot("ihuyi", "+8613800138000") == (f"nq:cap:ihuyi:{{b{bucket}}}", "8613800138000")
    assert cap_slot("ihuyi", "8613800138000") == cap_slot("ihuyi", "+8613800138000")
    assert cap_slot("jumdata", "+8613800138000")[0] != cap_slot("ihuyi", "+8613800138000")[0]
    # consecutive numbers spread over the buckets (a few dozen fields a bucket, not one)
    spread = {cap_slot("ihuyi", f"+86138{i:08d}")[0] for i in range(2_000)}
    assert len(spread) > 1_500
    assert legacy_key("ihuyi", "+8613800138000") == "nq:cap:ihuyi:{8613800138000}"


def same_bucket(number: str, nth: int = 1, provider: str = "ihuyi") -> str:
    """The ``nth`` other number whose log lives in ``number``'s bucket."""
    key = cap_slot(provider, number)[0]
    others = (f"+86139{i:08d}" for i in itertools.count())
    return next(islice((n for n in others if cap_slot(provider, n)[0] == key), nth - 1, None))


def turn_of(number: str, provider: str = "ihuyi") -> int:
    """The maintenance turn that sweeps ``number``'s bucket (CapLimiter.sweep)."""
    return int(cap_slot(provider, number)[0].split("{b")[1].rstrip("}")) // SWEEP_SLICE


def test_mixed_formats_share_a_cap_only_once_the_caller_normalises(caps: CapLimiter) -> None:
    rules = parse_caps("1/minute")
    assert caps.hit("ihuyi", "+8613800138000", rules).allowed
    # "+86…" and "86…" are one E.164 number: one key, so the second is refused
    assert not caps.hit("ihuyi", "8613800138000", rules).allowed
    # a national "138…" is not E.164: this module does not guess the country …
    assert caps.hit("ihuyi", "13800138000", rules).allowed
    # … so the caller normalises, and then it is the same number again
    e164 = phonenumbers.format_number(
        phonenumbers.parse("138 0013 8000", "CN"), phonenumbers.PhoneNumberFormat.E164
    )
    assert not caps.hit("ihuyi", e164, rules).allowed
    # another provider counts its own calls
    assert caps.hit("jumdata", "+8613800138000", rules).allowed


# -- the provider's own block --------------------------------------------------------------


def test_a_provider_block_defers_until_it_ends_and_keeps_the_log(
    caps: CapLimiter, client: redis.Redis
) -> None:
    rules = parse_caps("3/minute")
    first = caps.hit("ihuyi", NUMBER, rules)
    # a block long enough that the next hit, on a busy machine, still comes within it
    before = redis_now(client)
    until = caps.block("ihuyi", NUMBER, 1.5)
    assert before + 1.5 - 0.001 <= until <= redis_now(client) + 1.5 + 0.001  # whole ms
    held = caps.hit("ihuyi", NUMBER, rules)
    assert (held.allowed, held.cap, held.retry_at) == (False, PROVIDER_BLOCK, until)

    sleep_until(client, until)
    assert caps.hit("ihuyi", NUMBER, rules).allowed
    assert caps.hit("ihuyi", NUMBER, rules).allowed
    # the attempt made before the block still counts
    fourth = caps.hit("ihuyi", NUMBER, rules)
    assert (fourth.allowed, fourth.cap) == (False, "3/minute")
    assert fourth.retry_at == pytest.approx(first.now + 60, abs=1e-6)
    assert unpack(client.hget(*cap_slot("ihuyi", NUMBER)) or b"")[1] is None  # block cleared


def test_a_shorter_block_never_shortens_a_longer_one(caps: CapLimiter) -> None:
    long = caps.block("ihuyi", NUMBER, 120)
    assert caps.block("ihuyi", NUMBER, 1) == long
    assert caps.hit("ihuyi", NUMBER, IHUYI).retry_at == long


def test_a_block_keeps_the_field_until_it_ends_and_no_shorter_than_the_log(
    caps: CapLimiter, client: redis.Redis
) -> None:
    """The sweep leaves a field while its block stands, even with nothing in the log,
    and while its log counts, even after a short block ended."""
    now_ms = int(redis_now(client) * 1000)
    blocked, brief, logged = NUMBER, same_bucket(NUMBER), "+8613800138001"
    client.hset(*cap_slot("ihuyi", blocked), pack([now_ms - 2 * 86_400_000]))
    caps.block("ihuyi", blocked, 600)
    caps.block("ihuyi", brief, 0.001)
    caps.hit("ihuyi", logged, IHUYI)
    caps.block("ihuyi", logged, 0.001)
    sleep_until(client, now_ms / 1000 + 0.05)
    turn = turn_of(NUMBER)
    assert caps.sweep("ihuyi", IHUYI, turn) == 1  # the ended block with nothing logged
    assert client.hget(*cap_slot("ihuyi", brief)) is None
    assert caps.hit("ihuyi", blocked, IHUYI).cap == PROVIDER_BLOCK
    caps.sweep("ihuyi", IHUYI, turn_of(logged))
    assert len(log_of(client, logged)) == 1


# -- TTL, state size, the packed layout --------------------------------------------------------


def test_stale_fields_vanish_at_the_sweep_and_the_rest_stay(client: redis.Redis) -> None:
    """A field whose newest attempt is older than the longest window plus the margin
    counts for nothing: the maintenance sweep drops it (the bucket with its last
    field), keeps one a millisecond younger, and a second sweep finds nothing."""
    caps = CapLimiter(client, margin=0.5)
    now_ms = int(redis_now(client) * 1000)
    longest = 86_400_500
    old, young, fresh = NUMBER, same_bucket(NUMBER), same_bucket(NUMBER, 2)
    client.hset(*cap_slot("ihuyi", old), pack([now_ms - 2 * longest, now_ms - longest - 1]))
    client.hset(*cap_slot("ihuyi", young), pack([now_ms - 2 * longest, now_ms - longest + 60_000]))
    assert caps.hit("ihuyi", fresh, IHUYI).allowed
    assert caps.sweep("ihuyi", IHUYI, turn_of(NUMBER)) == 1
    key = cap_slot("ihuyi", NUMBER)[0]
    assert sorted(client.hkeys(key)) == sorted(n.lstrip("+").encode() for n in (young, fresh))
    assert caps.sweep("ihuyi", IHUYI, turn_of(NUMBER)) == 0  # idempotent: two beats agree
    assert log_of(client, young) == [now_ms - 2 * longest, now_ms - longest + 60_000]  # as it was
    # with shorter caps, once every field is past their window, the bucket goes
    sleep_until(client, redis_now(client) + 1.6)
    assert caps.sweep("ihuyi", parse_caps("1/second"), turn_of(NUMBER)) == 2
    assert client.exists(key) == 0


def test_beats_sweep_reaches_an_idle_bucket_in_its_turn(
    runtime: Runtime, client: redis.Redis
) -> None:
    """tasks/maintenance.py's sweep, in the turn of a bucket no decision writes, drops
    its stale field (ihuyi's caps, and the verification namespace's), and not before."""
    now_ms = int(redis_now(client) * 1000)
    for namespace in ("ihuyi", CAP_NAMESPACE):
        client.hset(*cap_slot(namespace, NUMBER), pack([now_ms - 3 * 86_400_000]))
    interval = runtime.settings.sweep_interval
    turn = turn_of(NUMBER)
    other = turn + 1 + (BUCKETS // SWEEP_SLICE) * 1000  # another slice, some rounds on
    assert sweep_caps(runtime, now=other * interval) == 0
    assert sweep_caps(runtime, now=(turn + BUCKETS // SWEEP_SLICE) * interval) == 2
    assert client.keys("nq:cap:*") == []


def test_a_decision_that_adds_a_field_sweeps_its_bucket_now_and_then(
    caps: CapLimiter, client: redis.Redis
) -> None:
    """On one new field in 256 (a stamp that is a multiple of 256 ms) caps.lua drops
    its bucket's stale fields itself; on the others it does not."""
    base = 1_764_633_600_000 - 1_764_633_600_000 % 256
    rules = parse_caps("3/minute")
    stale, other, sweeper = NUMBER, same_bucket(NUMBER), same_bucket(NUMBER, 2)
    client.hset(*cap_slot("ihuyi", stale), pack([base - 3_600_000]))
    assert caps.hit("ihuyi", other, rules, at=(base + 1) / 1000).allowed
    assert client.hget(*cap_slot("ihuyi", stale)) is not None
    assert caps.hit("ihuyi", sweeper, rules, at=(base + 256) / 1000).allowed
    assert client.hget(*cap_slot("ihuyi", stale)) is None
    assert len(log_of(client, other)) == len(log_of(client, sweeper)) == 1


# -- the old layout: one key a number, read for one longest window after the switch --------


def test_attempts_in_a_key_of_the_old_layout_count_until_their_window_ends(
    client: redis.Redis,
) -> None:
    """Three attempts this minute under the old layout: the fourth, the first under the
    buckets, is refused until the oldest leaves the minute (single and batched), and the
    old key is never written; its provider block holds as well."""
    now_ms = int(redis_now(client) * 1000)
    earlier = [now_ms - 30_000, now_ms - 20_000, now_ms - 10_000]
    client.set(legacy_key("ihuyi", NUMBER), pack(earlier), px=86_400_000)
    blocked = "+8613800138001"
    client.set(legacy_key("ihuyi", blocked), pack([now_ms - 99_000], now_ms + 600_000), px=600_000)
    caps = CapLimiter(client, margin=0)  # a process started after the switch
    # caps show, before any decision: reads the old key, marks nothing (it only reads)
    assert CapLimiter(client, margin=0).state("ihuyi", NUMBER, IHUYI).windows[1].used == 3
    assert client.exists(LAYOUT_KEY) == 0
    fourth = caps.hit("ihuyi", NUMBER, IHUYI)
    assert (fourth.allowed, fourth.cap) == (False, "3/minute")
    assert fourth.retry_at == (earlier[0] + 60_000) / 1000
    (batched,) = caps.hit_many([CapCheck("ihuyi", NUMBER, IHUYI)])
    assert (batched.allowed, batched.retry_at) == (False, fourth.retry_at)
    held = caps.hit("ihuyi", blocked, IHUYI)
    assert (held.allowed, held.cap, held.retry_at) == (False, PROVIDER_BLOCK, now_ms / 1000 + 600)
    assert caps.state("ihuyi", NUMBER, IHUYI).windows[1].used == 3  # caps show reads it too
    # another number is admitted, and its attempt goes to its bucket only
    assert caps.hit("ihuyi", "+8613800138002", IHUYI).allowed
    assert client.exists(legacy_key("ihuyi", "+8613800138002")) == 0
    assert client.get(legacy_key("ihuyi", NUMBER)) == pack(earlier)


def test_past_the_transition_window_the_old_keys_are_not_read(client: redis.Redis) -> None:
    """Told by outcome, not by counting GETs (the server's counters are shared with every
    other test on it): each old key holds a full minute, which would refuse the number
    if it were read. The mark is read once a process: marking a fresh switch afterwards
    changes nothing for this limiter, while a new one reads the old keys again."""
    now_ms = int(redis_now(client) * 1000)
    full_minute = pack([now_ms - 30_000] * 3)
    other, third = "+8613800138001", "+8613800138002"
    for number in (NUMBER, other, third):
        client.set(legacy_key("ihuyi", number), full_minute, px=86_400_000)
    # the buckets first ran two days ago, old keys there then: their window is over
    client.set(LAYOUT_KEY, f"{now_ms - 2 * 86_400_000} 1")
    caps = CapLimiter(client, margin=0)
    assert caps.hit("ihuyi", NUMBER, IHUYI).allowed
    client.set(LAYOUT_KEY, f"{now_ms} 1")  # as if switched just now: read again, refused
    assert caps.hit_many([CapCheck("ihuyi", other, IHUYI)])[0].allowed
    assert not CapLimiter(client, margin=0).hit("ihuyi", third, IHUYI).allowed


def test_a_redis_without_keys_of_the_old_layout_never_reads_them(client: redis.Redis) -> None:
    caps = CapLimiter(client, margin=0)
    assert caps.hit("ihuyi", NUMBER, IHUYI).allowed
    switched, old_keys = (client.get(LAYOUT_KEY) or b"").split()
    assert old_keys == b"0" and abs(int(switched) - redis_now(client) * 1000) < 5_000
    # an old key appearing later (an old worker left running) is not looked for
    client.set(legacy_key("ihuyi", "+8613800138001"), pack([int(switched)] * 3), px=60_000)
    assert CapLimiter(client, margin=0).hit("ihuyi", "+8613800138001", IHUYI).allowed


def test_three_attempts_a_minute_apart_fit_in_twelve_bytes(
    caps: CapLimiter, client: redis.Redis
) -> None:
    """What keeps a number to a few dozen bytes of Redis: see bench/caps.py."""
    now_ms = int(redis_now(client) * 1000)
    client.hset(*cap_slot("ihuyi", NUMBER), pack([now_ms - 130_000, now_ms - 65_000]))
    assert caps.hit("ihuyi", NUMBER, IHUYI).allowed
    raw = client.hget(*cap_slot("ihuyi", NUMBER)) or b""
    assert len(raw) <= 12
    times, blocked = unpack(raw)
    assert blocked is None
    assert times[:2] == [now_ms - 130_000, now_ms - 65_000]
    assert abs(times[2] - now_ms) < 1_000


def test_the_log_reads_long_gaps_and_keeps_only_what_a_cap_can_still_use(
    caps: CapLimiter, client: redis.Redis
) -> None:
    """Gaps of 1 to 5 varint bytes read back exactly; the re-packed log drops attempts
    older than the longest window and keeps at most the largest amount."""
    now_ms = int(redis_now(client) * 1000)
    day = 86_400_000
    crafted = [now_ms - 6 * day, now_ms - 2 * day, now_ms - 40_000, now_ms - 300, now_ms - 250]
    rules = (Cap(window=7 * 86400, amount=3, text="3/7 days"),)
    client.hset(*cap_slot("ihuyi", NUMBER), pack(crafted))
    refused = caps.hit("ihuyi", NUMBER, rules)
    assert not refused.allowed
    assert refused.retry_at == pytest.approx((now_ms - 40_000 + 7 * day) / 1000, abs=1e-6)
    assert log_of(client) == crafted  # nothing written on a refusal

    roomy = parse_caps("5/minute;4/2 days")
    allowed = caps.hit("ihuyi", NUMBER, roomy)
    assert allowed.allowed
    kept = log_of(client)
    # the oldest falls to the largest amount (5 kept), the next to the longest window
    assert kept[:3] == [now_ms - 40_000, now_ms - 300, now_ms - 250]
    assert len(kept) == 4 and kept[3] == round(allowed.now * 1000)


def test_a_log_that_only_grows_is_the_same_bytes_as_one_packed_afresh(
    caps: CapLimiter, client: redis.Redis
) -> None:
    """caps.lua appends the new gap to the stored bytes when nothing ages out: the
    result must read as the full re-pack would, gaps of any width included."""
    now_ms = int(redis_now(client) * 1000)
    crafted = [now_ms - 3_000_000_000, now_ms - 20_000, now_ms - 19_900]  # 5, 3, 1 bytes
    client.hset(*cap_slot("ihuyi", NUMBER), pack(crafted))
    rules = (Cap(window=40 * 86400, amount=9, text="9/40 days"),)
    allowed = caps.hit("ihuyi", NUMBER, rules)
    assert allowed.allowed
    stamps = [*crafted, round(allowed.now * 1000)]
    assert client.hget(*cap_slot("ihuyi", NUMBER)) == pack(stamps)
    again = caps.hit("ihuyi", NUMBER, rules)
    assert client.hget(*cap_slot("ihuyi", NUMBER)) == pack([*stamps, round(again.now * 1000)])


@pytest.mark.parametrize("gap_ms", [0, 127, 128, 16_383, 16_384, 2**21 - 1, 2**21, 2**28 + 5])
def test_an_appended_gap_of_each_width_is_the_bytes_a_fresh_pack_makes(
    caps: CapLimiter, client: redis.Redis, gap_ms: int
) -> None:
    """caps_gap writes a gap of one, two or three bytes straight from arithmetic and a
    longer one through caps_varint: each width's edges, on the simulated clock so the
    gap is exact."""
    base_ms = 1_764_633_600_000
    crafted = [base_ms, base_ms + 1_000]
    client.hset(*cap_slot("ihuyi", NUMBER), pack(crafted))
    rules = (Cap(window=40 * 86400, amount=9, text="9/40 days"),)
    at_ms = crafted[-1] + gap_ms
    assert caps.hit("ihuyi", NUMBER, rules, at=at_ms / 1000).allowed
    assert client.hget(*cap_slot("ihuyi", NUMBER)) == pack([*crafted, at_ms])


def test_the_answers_and_arguments_made_once_equal_those_made_afresh(
    caps: CapLimiter, client: redis.Redis
) -> None:
    """The hot path's shortcuts (an allowed Decision built without its __init__, each
    tuple of caps encoded once) give what the plain forms give."""
    first = caps.hit("ihuyi", NUMBER, IHUYI)
    assert first == Decision(True, now=first.now) and first.stamp_ms is not None
    assert hash(first) == hash(Decision(True, now=first.now))
    plain = (b"86400000", b"", b"", b"", b"1000", b"1", b"60000", b"3", b"86400000", b"10")
    assert caps._args(IHUYI) == plain == caps._args(list(IHUYI))
    assert caps._args(IHUYI) is caps._args(IHUYI)  # made once per tuple
    as_list = list(IHUYI)  # a list may change: worked out each time
    assert caps._args(as_list) is not caps._args(as_list)
    assert caps._args(IHUYI, 5) == [86_400_000, 5, b"", "", 1_000, 1, 60_000, 3, 86_400_000, 10]


def test_an_attempt_is_never_recorded_before_the_last_one(
    caps: CapLimiter, client: redis.Redis
) -> None:
    """Should Redis's clock step back, the log stays ordered and counts for longer."""
    now_ms = int(redis_now(client) * 1000)
    ahead = now_ms + 5_000
    client.hset(*cap_slot("ihuyi", NUMBER), pack([ahead]))
    assert caps.hit("ihuyi", NUMBER, parse_caps("3/minute")).allowed
    assert log_of(client) == [ahead, ahead]


def test_a_garbled_or_foreign_value_does_not_lock_a_number_out(
    caps: CapLimiter, client: redis.Redis
) -> None:
    client.hset(*cap_slot("ihuyi", NUMBER), b"\x00\x01")
    assert caps.hit("ihuyi", NUMBER, IHUYI).allowed


# -- many at once -------------------------------------------------------------------------


def test_hit_many_equals_the_same_hits_one_by_one(caps: CapLimiter) -> None:
    rules = parse_caps("2/second;3/minute")
    other = parse_caps("1/minute")
    plan = [
        ("a", rules),
        ("b", other),
        ("a", rules),
        ("c", ()),
        ("a", rules),
        ("b", other),
        ("d", rules),
        ("a", rules),
    ]
    numbers = {"a": "+8613800000001", "b": "+8613800000002", "c": "+8613800000003"}
    numbers["d"] = "+8613800000004"
    batched = caps.hit_many([CapCheck("p1", numbers[n], c) for n, c in plan])
    one_by_one = [caps.hit("p2", numbers[n], c) for n, c in plan]

    assert [(d.allowed, d.cap) for d in batched] == [(d.allowed, d.cap) for d in one_by_one]
    assert [d.allowed for d in batched] == [True, True, True, True, False, False, True, False]
    for b, s in zip(batched, one_by_one, strict=True):
        if not b.allowed:
            assert b.retry_at is not None and s.retry_at is not None
            assert b.retry_at - b.now == pytest.approx(s.retry_at - s.now, abs=0.05)


def test_a_redis_that_lost_its_scripts_records_each_attempt_once(
    caps: CapLimiter, client: redis.Redis
) -> None:
    rules = parse_caps("2/minute")
    client.script_flush()
    batch = caps.hit_many([CapCheck("ihuyi", NUMBER, rules) for _ in range(3)])
    assert [d.allowed for d in batch] == [True, True, False]
    assert len(log_of(client)) == 2
    client.script_flush()
    assert not caps.hit("ihuyi", NUMBER, rules).allowed
    client.script_flush()
    assert caps.block("ihuyi", NUMBER, 1) > 0


def allowed_in_any_window(moments_ms: list[int], window_ms: int) -> int:
    """The most allowed attempts in any window of ``window_ms`` ending at an attempt."""
    moments = sorted(moments_ms)
    most, start = 0, 0
    for end, moment in enumerate(moments):
        while moments[start] <= moment - window_ms:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_many_threads_on_one_number_never_exceed_any_cap(client: redis.Redis) -> None:
    """Eight workers (some batched) race for one number for 1.2 s; the
    allowed attempts, read back on Redis's clock, never break a window."""
    caps = CapLimiter(client, margin=0)
    rules = parse_caps("20/second;30/2 seconds")
    allowed: list[int] = []
    refused = 0
    lock = threading.Lock()
    stop = time.monotonic() + 1.2

    def worker(batched: bool) -> None:
        nonlocal refused
        mine: list[Decision] = []
        while time.monotonic() < stop:
            if batched:
                mine += caps.hit_many([CapCheck("ihuyi", NUMBER, rules)] * 3)
            else:
                mine.append(caps.hit("ihuyi", NUMBER, rules))
        with lock:
            allowed.extend(round(d.now * 1000) for d in mine if d.allowed)
            refused += sum(not d.allowed for d in mine)

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert refused > 0
    assert len(allowed) >= 20  # the caps were reached, not merely respected
    assert allowed_in_any_window(allowed, 1_000) <= 20
    assert allowed_in_any_window(allowed, 2_000) <= 30
    recorded = log_of(client)
    assert recorded == sorted(recorded)
    assert len(recorded) == min(len(allowed), 30)


def test_the_window_analysis_itself_counts_right() -> None:
    assert allowed_in_any_window([0, 999, 1000, 1001], 1000) == 3
    assert allowed_in_any_window([0, 1000, 2000], 1000) == 1
    assert allowed_in_any_window([5, 5, 5], 1) == 3


def test_any_other_error_in_a_batch_is_raised_not_swallowed(
    caps: CapLimiter, client: redis.Redis
) -> None:
    client.set(cap_slot("ihuyi", NUMBER)[0], "not a bucket")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        caps.hit_many(
            [CapCheck("ihuyi", "+8613800138001", IHUYI), CapCheck("ihuyi", NUMBER, IHUYI)]
        )
