"""The interleaving proof of docs/duplicates.md: any interleaving of duplicate dispatches, the sweeper,
the pump, pause/resume/cancel, receipts, lost claims and a crash between any two steps
calls each number at most once for one notification.

The runner drives the real thing: ``tasks.dispatch.dispatch_steps`` (the phases of one
dispatch, which ``dispatch_ids`` runs straight through), the real store (SQLite), the
real caps, claims and deferred set on a private Redis, and the provider sandbox over
HTTP, whose ledger counts the calls. Hypothesis draws the schedule: which copy takes its
next step, when a copy is abandoned half way (its worker died), when the sweeper runs as
if the sending timeout had passed, when Redis forgets the claims (a restart), when time
passes (the controlled clock moves: caps free, deferrals come due).

Invariants, checked after every schedule has run and been drained:
- the sandbox received at most one request per notification (``on_ambiguous=unknown``);
- every notification's events form one unbroken chain (each starts where the last
  ended): no write was decided from a status the row no longer had;
- nothing is left ``sending`` once the sweeper has seen the timeout pass.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import NewNotification, NewReceipt, Status
from store.campaigns import IMPORTING, RUNNING, CampaignRow
from tasks.campaigns import campaigns
from tasks.campaigns.control import CampaignStateError, cancel, pause, resume
from tasks.dispatch import Report, dispatch_steps
from tasks.maintenance import release, sweep_once
from tests.conftest import System, make_url_db
from tests.services import wait_until

_numbers = itertools.count(1)

ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "start",
                *["step"] * 10,
                "crash",
                "sweep",
                "pump",
                "pause",
                "resume",
                "cancel",
                "receipt",
                "later",
                "later",
                "forget-claims",
            ]
        ),
        st.integers(0, 7),
    ),
    min_size=4,
    max_size=40,
)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_base: str) -> Iterator[System]:
    """One sandbox and one in-process runtime for every schedule (each schedule uses
    numbers of its own); no worker runs: the test is the worker, step by step."""
    directory: Path = tmp_path_factory.mktemp("interleavings")
    url = make_url_db(redis_base, 15)
    redis.Redis.from_url(url).flushdb()
    system = System(
        directory,
        url,
        f"sqlite:///{directory / 'notifyq.db'}",
        sending_timeout="120",
        sweep_grace="1",
        on_ambiguous="unknown",
        clock_control="true",
    )
    system.sandbox("--receipt-delay", "3600")
    wait_until(lambda: system.ledger() is not None, 30, what="the sandbox")
    yield system
    system.close()


@dataclass
class Copy:
    """One copy of a dispatch message, taken by some worker thread."""

    ids: list[int]
    steps: Iterator[str]
    report: Report = field(default_factory=Report)
    done: bool = False

    def step(self) -> None:
        try:
            next(self.steps)
        except StopIteration:
            self.done = True

    def crash(self) -> None:
        self.steps.close()  # the worker died here: nothing after this point runs
        self.done = True


class Schedule:
    def __init__(self, system: System) -> None:
        self.system = system
        self.rt = system.runtime
        now = self.rt.redis_now()
        self.plain = self.rt.notifications.insert(
            [NewNotification(provider="ihuyi", to=_number(), content="您的订单已发货。")]
        )[0].id
        store = campaigns(self.rt)
        self.campaign = store.create(
            name="interleaving",
            provider="ihuyi",
            content="您的预约明天开始。",
            options={},
        )
        store.add_notifications(
            store.get(self.campaign),
            [CampaignRow(1, _number(), "您的预约明天开始。", ())],
            not_before=now,
        )
        store.set_status(self.campaign, RUNNING, expect=[IMPORTING], started_at=now, runs=1)
        self.in_campaign = store.release(self.campaign, 10, now)[0]
        self.ids = [self.plain, self.in_campaign]
        self.copies: list[Copy] = []

    def start(self, k: int) -> None:
        self.copy(*([self.ids[k % 2]] if k < 6 else self.ids))  # single, or both in one task

    def copy(self, *ids: int) -> Copy:
        report = Report()
        copy = Copy(list(ids), dispatch_steps(self.rt, list(ids), report), report)
        self.copies.append(copy)
        return copy

    def forget_claims(self) -> None:
        for key in self.rt.redis.scan_iter("nq:claim:*"):
            self.rt.redis.delete(key)

    def round_robin_new(self, *ids: int) -> None:
        self.copy(*ids)
        self.round_robin()

    def live(self) -> list[Copy]:
        return [c for c in self.copies if not c.done]

    def act(self, action: str, k: int) -> None:
        live = self.live()
        if action == "start":
            self.start(k)
        elif action == "step" and live:
            live[k % len(live)].step()
        elif action == "crash" and live:
            live[k % len(live)].crash()
        elif action == "sweep":
            # as if the sending timeout had passed: any row still `sending` lost its worker
            sweep_once(self.rt, now=self.rt.redis_now() + 121)
        elif action == "pump":
            release(self.rt)
        elif action in ("pause", "resume", "cancel"):
            control = {"pause": pause, "resume": resume, "cancel": cancel}[action]
            with contextlib.suppress(CampaignStateError):  # not in a state for it: a no-op
                control(self.rt, self.campaign)
        elif action == "receipt":
            row = self.rt.notifications.get(self.ids[k % 2])
            if row.provider_ref:
                self.rt.receipts.record(
                    [NewReceipt("ihuyi", row.provider_ref, delivered=k % 3 != 0, code="2")]
                )
        elif action == "later":
            # time passes (a second, or a minute): caps free, deferrals come due
            self.rt.clock.advance(1.6 if k < 4 else 61)
        elif action == "forget-claims":
            self.forget_claims()

    def drain(self) -> None:
        """Every copy still running runs to its end; then, a day later, whatever still
        waits is dispatched again (as the pump and the sweeper would) until nothing
        moves; last, the sweeper sees the sending timeout pass."""
        for _ in range(4):
            self.round_robin()
            self.rt.clock.advance(2 * 86400)
            self.forget_claims()  # their TTLs have passed too
            self.start(6)
        self.round_robin()
        sweep_once(self.rt, now=self.rt.redis_now() + 121)

    def round_robin(self) -> None:
        """The copies still running take one step each in turn, to their ends."""
        while live := self.live():
            for copy in live:
                copy.step()


def _number() -> str:
    return f"+86139{next(_numbers):08d}"


@pytest.mark.slow
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=ACTIONS)
def test_no_interleaving_calls_a_number_twice_for_one_notification(
    system: System, actions: list[tuple[str, int]]
) -> None:
    schedule = Schedule(system)
    for k in (0, 0, 1, 1, 6):  # each message delivered twice, and once more in one batch
        schedule.start(k)
    for action, k in actions:
        schedule.act(action, k)
    schedule.drain()

    rt = schedule.rt
    numbers = {rt.notifications.get(i).to.removeprefix("+86"): i for i in schedule.ids}
    # every request that reached the provider for a number, placed or refused: with no
    # faults in the sandbox and a number of its own per notification, a second request
    # can only be a second call (the sandbox's own 1/second cap refusing it proves
    # nothing: its clock is not the one this test moves)
    placed = Counter(call["number"] for call in system.ledger("ihuyi") if call["number"] in numbers)
    twice = {numbers[n]: count for n, count in placed.items() if count > 1}
    assert not twice, f"called twice: {twice} after {actions}"
    for notification_id in schedule.ids:
        events = rt.notifications.events(notification_id)
        chain = [(_s(e.from_status), _s(e.to_status)) for e in events]
        for (_, before), (after, _) in zip(chain, chain[1:], strict=False):
            assert before == after, f"#{notification_id} broken chain {chain} after {actions}"
        status = _s(rt.notifications.get(notification_id).status)
        assert status != Status.SENDING.value, f"#{notification_id} left sending after {actions}"


def _s(status: Any) -> str:
    return str(getattr(status, "value", status))


def test_the_copy_refused_by_the_slot_its_twin_took_writes_nothing(system: System) -> None:
    """One interleaving spelled out: two copies read ``queued``; the first takes the cap
    slot and commits ``sending``; the second, refused by that very slot, would write
    ``sending → deferred`` (a permitted transition), and the row would be released and
    called again a second later. The second stops at its claim, or — its claim lost —
    its deferral is refused by the version it read."""
    for forget_claims in (False, True):
        schedule = Schedule(system)
        first, twin = schedule.copy(schedule.plain), schedule.copy(schedule.plain)
        first.step()  # read: queued
        twin.step()  # read: queued
        first.step()  # claimed
        first.step()  # admitted: the cap slot is taken
        if forget_claims:
            schedule.act("forget-claims", 0)
        twin.step()  # claimed (or stopped: its twin holds the claim)
        twin.step()  # admitted: refused by the slot its twin took
        first.step()  # `sending` committed
        while not twin.done:
            twin.step()  # writes its deferral, or nothing
        while not first.done:
            first.step()  # called, answered, recorded
        schedule.rt.clock.advance(2 * 86400)
        schedule.forget_claims()
        schedule.round_robin_new(schedule.plain)

        row = schedule.rt.notifications.get(schedule.plain)
        assert _s(row.status) in ("sent", "delivered", "unknown"), row.status
        calls = [c for c in system.ledger("ihuyi") if c["number"] == row.to.removeprefix("+86")]
        assert len(calls) == 1, calls  # requests, placed or refused: one
        steps = [_s(e.to_status) for e in schedule.rt.notifications.events(schedule.plain)]
        assert steps[:2] == ["sending", "sent"], steps
