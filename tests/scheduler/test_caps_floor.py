"""The caps' floor on a real Redis (scheduler/caps_floor.py): while a lineage is young,
the store's calls from before it count with the log's attempts since, each once; a
changed replication id starts a new lineage; past the longest window the store is no
longer asked; providers the store does not record keep trusting their log.

The store here is a list of past calls handed to the limiter (what store/calls.py
answers; tests/store/test_calls.py proves that answer); the time is given to each
decision (``at``), so every retry moment is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import redis

from scheduler.caps import CapLimiter, Decision, cap_slot, decode_log, legacy_key
from scheduler.caps_floor import LINEAGE_KEY, CapFloor, PastCall
from scheduler.limits import parse_caps
from tests.scheduler.test_caps import pack

NUMBER = "+8613800138000"
DAY = 86400.0
T = 1_800_000_000.0
THREE_A_DAY = parse_caps("3/day")


class Ledger:
    """The store's calls of one number, and every question the limiter asked it."""

    def __init__(self, *calls: PastCall) -> None:
        self.calls = list(calls)
        self.asked: list[tuple[list[tuple[str, str]], float]] = []

    def recent(
        self, numbers: Sequence[tuple[str, str]], since: float
    ) -> dict[tuple[str, str], list[PastCall]]:
        self.asked.append((list(numbers), since))
        mine = [c for c in self.calls if c.started >= since]
        return {("jumdata", NUMBER): mine} if ("jumdata", NUMBER) in numbers and mine else {}


def limiter(client: redis.Redis, ledger: Ledger) -> CapLimiter:
    return CapLimiter(client, margin=0, floor=CapFloor(frozenset({"jumdata"}), ledger.recent))


def test_a_new_lineage_counts_the_calls_the_store_recorded_before_it(
    client: redis.Redis,
) -> None:
    ledger = Ledger(*(PastCall(T - h * 3600, T - h * 3600 + 30) for h in (3, 2, 1)))
    caps = limiter(client, ledger)
    refused = caps.hit("jumdata", NUMBER, THREE_A_DAY, at=T)
    assert (refused.allowed, refused.cap) == (False, "3/day")
    assert refused.retry_at == pytest.approx(T - 3 * 3600 + 30 + DAY)  # the oldest leaves
    assert [numbers for numbers, _ in ledger.asked] == [[("jumdata", NUMBER)]]
    assert ledger.asked[0][1] <= T - DAY  # the whole window was asked for
    assert client.hget(*cap_slot("jumdata", NUMBER)) is None  # nothing recorded


def test_an_attempt_of_the_new_lineage_counts_once_though_the_store_records_it_too(
    client: redis.Redis,
) -> None:
    ledger = Ledger(PastCall(T - 3600, T - 3590))
    caps = limiter(client, ledger)
    first = caps.hit("jumdata", NUMBER, THREE_A_DAY, at=T)
    assert first.allowed
    ledger.calls.append(PastCall(first.now, T + 1))  # its sending, stamped as admitted
    assert caps.hit("jumdata", NUMBER, THREE_A_DAY, at=T + 10).allowed
    third = caps.hit("jumdata", NUMBER, THREE_A_DAY, at=T + 20)
    assert (third.allowed, third.cap) == (False, "3/day")
    assert third.retry_at == pytest.approx(T - 3590 + DAY)


def test_a_call_still_going_counts_as_made_now(client: redis.Redis) -> None:
    ledger = Ledger(PastCall(T - 30, None))
    caps = limiter(client, ledger)
    refused = caps.hit("jumdata", NUMBER, parse_caps("1/minute"), at=T)
    assert (refused.allowed, refused.retry_at) == (False, pytest.approx(T + 60))


def test_a_changed_replication_id_begins_a_new_lineage_and_an_old_one_asks_nothing(
    client: redis.Redis,
) -> None:
    ledger = Ledger()
    caps = limiter(client, ledger)

    def send(at: float) -> Decision:
        decision = caps.hit("jumdata", NUMBER, THREE_A_DAY, at=at)
        if decision.allowed:  # the dispatch records the call, stamped as admitted
            ledger.calls.append(PastCall(decision.now, at + 1))
        return decision

    assert send(T).allowed
    assert len(ledger.asked) == 1
    # a day later the lineage is old enough: the log is whole, the store not asked (the
    # first decision after the doubt may still ask once: the limiter's hint is behind)
    assert send(T + DAY + 1).allowed
    asked = len(ledger.asked)
    assert send(T + DAY + 2).allowed
    assert len(ledger.asked) == asked
    last = send(T + DAY + 3)
    assert last.allowed
    # the log loses its last attempt, as a replica promoted before it received it;
    # the mark it holds was written under another replication id (copied to the replica
    # with the data, or restored from a file after a restart): in doubt again
    assert CapLimiter(client, margin=0).refund("jumdata", NUMBER, last)
    replid, began = client.get(LINEAGE_KEY).split()
    client.set(LINEAGE_KEY, b"0" * len(replid) + b" " + began)
    refused = caps.hit("jumdata", NUMBER, THREE_A_DAY, at=T + DAY + 4)
    assert len(ledger.asked) == asked + 1
    assert (refused.allowed, refused.cap) == (False, "3/day")
    assert client.get(LINEAGE_KEY).split()[0] == replid


def test_a_provider_the_store_does_not_record_trusts_its_log(client: redis.Redis) -> None:
    ledger = Ledger()
    caps = limiter(client, ledger)
    assert caps.hit("verify", NUMBER, THREE_A_DAY, at=T).allowed
    assert ledger.asked == [] and client.exists(LINEAGE_KEY) == 0
    _, logged = decode_log(client.hget(*cap_slot("verify", NUMBER)))
    assert logged == [round(T * 1000)]


def test_without_a_floor_the_caps_never_read_the_lineage(client: redis.Redis) -> None:
    caps = CapLimiter(client, margin=0)
    assert caps.hit("jumdata", NUMBER, THREE_A_DAY, at=T).allowed
    assert client.exists(LINEAGE_KEY) == 0


def test_an_old_layout_key_counts_as_the_log_does_while_the_store_counts_what_came_before(
    client: redis.Redis,
) -> None:
    """Across the switch to buckets, while a lineage is young: the number's key of the old
    layout counts like its log (attempts since the lineage began), the store's calls
    like the floor (those before): each attempt once, none missed."""
    replid = client.info("replication")["master_replid"]
    began_ms = round((T - 1800) * 1000)
    client.set(LINEAGE_KEY, f"{replid} {began_ms}")
    before, since = T - 7200, T - 600  # the store has both calls; the old key both too
    ledger = Ledger(PastCall(before, before + 5), PastCall(since, since + 5))
    packed = pack([round(before * 1000), round(since * 1000)])
    client.set(legacy_key("jumdata", NUMBER), packed, px=60_000)
    caps = limiter(client, ledger)
    assert caps.hit("jumdata", NUMBER, THREE_A_DAY, at=T).allowed  # 2 before it, not 4
    fourth = caps.hit("jumdata", NUMBER, THREE_A_DAY, at=T + 10)
    assert (fourth.allowed, fourth.cap) == (False, "3/day")
    assert fourth.retry_at == pytest.approx(before + 5 + DAY)


def test_an_attempt_is_never_recorded_before_the_lineage_began(client: redis.Redis) -> None:
    """Callers' clocks (a simulated one, read before the call) may be behind the call
    that began the lineage: an attempt stamped before it would be neither in the log
    since nor in the floor read before it, and so count nowhere. It is recorded at the
    lineage's beginning instead, and the next one waits a second from there."""
    replid = client.info("replication")["master_replid"]
    began_ms = round(T * 1000)
    client.set(LINEAGE_KEY, f"{replid} {began_ms}")
    caps = limiter(client, Ledger())
    rules = parse_caps("1/second;3/day")
    first = caps.hit("jumdata", NUMBER, rules, at=T - 0.005)
    assert first.allowed and first.stamp_ms == began_ms
    again = caps.hit("jumdata", NUMBER, rules, at=T - 0.004)
    assert (again.allowed, again.cap) == (False, "1/second")
    assert again.retry_at == pytest.approx(T + 1)
    assert caps.refund("jumdata", NUMBER, first)  # the stamp it was told is the one kept
