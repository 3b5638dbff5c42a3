"""Admission's decisions, through ``admit`` on a real store and a real Redis: who of a
batch goes now, who waits until when and why, who moves to the next leg of its route, who
is refused — and that nothing a check refuses has taken a cap slot."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler.limits import parse_caps
from store import NewNotification, RouteLeg
from tasks import suppressions
from tasks.admission import Admission, admit
from tasks.runtime import Runtime

SHANGHAI = ZoneInfo("Asia/Shanghai")
NUMBERS = [f"+861380013{i:04d}" for i in range(20)]


def rows_of(
    rt: Runtime, *specs: tuple[str, str] | tuple[str, str, list[dict[str, Any]]]
) -> list[Any]:
    """Stored rows, as dispatch reads them: (provider, number[, route]) each."""
    drafts = [
        NewNotification(spec[0], spec[1], template="t", route=spec[2] if len(spec) > 2 else None)  # type: ignore[misc]
        for spec in specs
    ]
    ids = [made.id for made in rt.notifications.insert(drafts)]
    with rt.db.read() as conn:
        by_id = {row.id: row for row in rt.notifications.load(conn, ids)}
    return [by_id[i] for i in ids]


def attempts_held(rt: Runtime, provider: str, number: str) -> int:
    """How many attempts the caps hold for this number (read only)."""
    return len(rt.caps.state(provider, number, rt.policies[provider].caps).attempts)


def decided(out: Admission) -> dict[int, str]:
    """id → what became of it: ``go``, ``refused``, ``hop:<next provider>`` or the wait's
    reason; every row of a batch is in exactly one of them."""
    verdicts: list[tuple[int, str]] = [(row.id, "go") for row in out.go]
    verdicts += [(w.id, w.reason) for w in out.waits]
    verdicts += [(h.id, f"hop:{h.leg.provider}") for h in out.hops]
    verdicts += [(r.id, "refused") for r in out.refusals]
    ids = [i for i, _ in verdicts]
    assert len(ids) == len(set(ids)), f"a row decided twice: {verdicts}"
    return dict(verdicts)


# -- the per-number caps: the check that records ----------------------------------------


def test_each_number_under_its_caps_goes_and_takes_one_slot(runtime: Runtime) -> None:
    rows = rows_of(runtime, *(("ihuyi", n) for n in NUMBERS[:3]))
    now = runtime.redis_now()
    out = admit(runtime, rows, now)
    assert decided(out) == {row.id: "go" for row in rows}
    assert set(out.attempts.slots) == {row.id for row in rows}
    assert all(d.allowed and d.now >= now for d in out.attempts.slots.values())
    assert [attempts_held(runtime, "ihuyi", n) for n in NUMBERS[:3]] == [1, 1, 1]
    assert out.waits == [] and out.probes == set()


def test_a_second_send_to_a_number_waits_until_its_tightest_cap_frees(runtime: Runtime) -> None:
    """ihuyi's caps (1/second;3/minute;10/day): a number called a moment ago waits for the
    second to pass, the cap's margin added; the first call's slot is the only one taken."""
    first, second = rows_of(runtime, ("ihuyi", NUMBERS[0]), ("ihuyi", NUMBERS[0]))
    out = admit(runtime, [first], runtime.redis_now())
    taken = out.attempts.slots[first.id]
    out = admit(runtime, [second], runtime.redis_now())
    assert decided(out) == {second.id: "cap:ihuyi:1/second"}
    (wait,) = out.waits
    margin = runtime.settings.cap_margin
    assert wait.until == pytest.approx(taken.now + 1 + margin, abs=0.002)
    assert out.attempts.slots == {}
    assert attempts_held(runtime, "ihuyi", NUMBERS[0]) == 1


def test_two_copies_of_one_row_in_a_batch_take_one_slot(runtime: Runtime) -> None:
    """A duplicate delivered into the same batch: the number is called once, the copy
    waits (the claim normally stops it earlier; the caps hold even without it)."""
    (row,) = rows_of(runtime, ("ihuyi", NUMBERS[0]))
    out = admit(runtime, [row, row], runtime.redis_now())
    assert len(out.go) == 1 and len(out.waits) == 1
    assert out.waits[0].reason == "cap:ihuyi:1/second"
    assert attempts_held(runtime, "ihuyi", NUMBERS[0]) == 1


# -- suppressions: refused before anything is taken -------------------------------------


def test_a_number_suppressed_everywhere_is_refused_without_a_slot(runtime: Runtime) -> None:
    suppressions.add(runtime, NUMBERS[0], reason="opt-out")
    route = [{"provider": "jumdata", "template": "1001"}]
    plain, routed, other = rows_of(
        runtime, ("ihuyi", NUMBERS[0]), ("ihuyi", NUMBERS[0], route), ("ihuyi", NUMBERS[1])
    )
    out = admit(runtime, [plain, routed, other], runtime.redis_now())
    assert decided(out) == {plain.id: "refused", routed.id: "refused", other.id: "go"}
    assert {r.reason for r in out.refusals} == {"suppressed:opt-out"}
    assert all(r.values["next_attempt_at"] is None for r in out.refusals)
    assert attempts_held(runtime, "ihuyi", NUMBERS[0]) == 0


def test_a_number_suppressed_by_its_provider_moves_to_the_next_leg(runtime: Runtime) -> None:
    suppressions.add(runtime, NUMBERS[0], provider="ihuyi", reason="blacklisted")
    route = [{"provider": "jumdata", "template": "1001"}, {"provider": "apispace-voice"}]
    routed, plain = rows_of(runtime, ("ihuyi", NUMBERS[0], route), ("ihuyi", NUMBERS[0]))
    out = admit(runtime, [routed, plain], runtime.redis_now())
    assert decided(out) == {routed.id: "hop:jumdata", plain.id: "refused"}
    (hop,) = out.hops
    assert hop.rest == (RouteLeg("apispace-voice"),)
    assert hop.reason == "suppressed:ihuyi:blacklisted"
    assert attempts_held(runtime, "ihuyi", NUMBERS[0]) == 0


# -- the circuit ------------------------------------------------------------------------


def test_an_open_circuit_holds_every_row_or_moves_it_along_its_route(runtime: Runtime) -> None:
    now = runtime.redis_now()
    half_open = runtime.circuit.open("ihuyi", "ihuyi:4051 balance", now)
    route = [{"provider": "jumdata", "template": "1001"}]
    plain, routed = rows_of(runtime, ("ihuyi", NUMBERS[0]), ("ihuyi", NUMBERS[1], route))
    out = admit(runtime, [plain, routed], now)
    assert decided(out) == {plain.id: "circuit:ihuyi", routed.id: "hop:jumdata"}
    assert out.waits[0].until == pytest.approx(half_open)
    assert out.hops[0].rest == ()
    assert attempts_held(runtime, "ihuyi", NUMBERS[0]) == 0


def test_a_half_open_circuit_lets_exactly_one_probe_go(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(circuit_cooldown=1)
    opened = rt.redis_now()
    half_open = rt.circuit.open("ihuyi", "ihuyi:4051 balance", opened)
    rows = rows_of(rt, *(("ihuyi", n) for n in NUMBERS[:3]))
    out = admit(rt, rows, half_open + 0.01)
    verdicts = decided(out)
    assert sorted(verdicts.values()) == ["circuit:ihuyi", "circuit:ihuyi", "go"]
    assert out.probes == {"ihuyi"}
    # a second batch in the same half-open spell finds the probe taken: it waits
    (late,) = rows_of(rt, ("ihuyi", NUMBERS[5]))
    again = admit(rt, [late], half_open + 0.02)
    assert decided(again) == {late.id: "circuit:ihuyi"} and again.probes == set()


# -- the calling window -----------------------------------------------------------------


def test_outside_its_window_a_row_waits_for_the_opening_and_takes_nothing(
    runtime: Runtime,
) -> None:
    """jumdata calls 09:00-21:00 Beijing time (its default), whatever the hour here."""
    (row,) = rows_of(runtime, ("jumdata", NUMBERS[0]))
    night = datetime(2026, 12, 3, 22, 30, tzinfo=SHANGHAI).timestamp()
    out = admit(runtime, [row], night)
    assert decided(out) == {row.id: "window:jumdata"}
    assert out.waits[0].until == datetime(2026, 12, 4, 9, 0, tzinfo=SHANGHAI).timestamp()
    assert attempts_held(runtime, "jumdata", NUMBERS[0]) == 0
    morning = datetime(2026, 12, 4, 9, 0, 1, tzinfo=SHANGHAI).timestamp()
    assert decided(admit(runtime, [row], morning)) == {row.id: "go"}


def test_a_window_in_the_recipients_zone_follows_the_number(
    make_runtime: Callable[..., Runtime],
) -> None:
    """itniotech with ``local_time``: 10:00 in Delhi is 04:30 UTC, open for an Indian
    number under a 09:00-21:00 window although the configured zone (UTC) is closed."""
    rt = make_runtime(itniotech_window="09:00-21:00", itniotech_local_time="true")
    (india,) = rows_of(rt, ("itniotech", "+919876543210"))
    delhi_morning = datetime(2026, 12, 3, 10, 0, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp()
    assert decided(admit(rt, [india], delhi_morning)) == {india.id: "go"}
    delhi_night = datetime(2026, 12, 3, 22, 0, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp()
    (row,) = rows_of(rt, ("itniotech", "+919876543211"))
    out = admit(rt, [row], delhi_night)
    assert decided(out) == {row.id: "window:itniotech"}
    opening = datetime(2026, 12, 4, 9, 0, tzinfo=ZoneInfo("Asia/Kolkata")).timestamp()
    assert out.waits[0].until == opening


# -- throughput: the provider's rate and a campaign's -----------------------------------


def test_a_provider_rate_lets_one_burst_go_and_spaces_the_rest(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(ihuyi_rate="2/second")
    rows = rows_of(rt, *(("ihuyi", n) for n in NUMBERS[:5]))
    now = rt.redis_now()
    out = admit(rt, rows, now)
    verdicts = decided(out)
    assert [verdicts[row.id] for row in rows] == ["go", "go"] + ["rate:ihuyi"] * 3
    untils = [w.until for w in out.waits]
    assert untils == sorted(untils)
    assert untils[1] - untils[0] == pytest.approx(0.5) == untils[2] - untils[1]
    assert untils[0] >= now + 0.5 - 0.002
    # those that wait took no cap slot
    assert [attempts_held(rt, "ihuyi", n) for n in NUMBERS[:5]] == [1, 1, 0, 0, 0]
    # the burst is spent: the next batch waits whole, from when the rate admits again
    later = rows_of(rt, *(("ihuyi", n) for n in NUMBERS[5:7]))
    out = admit(rt, later, rt.redis_now())
    assert set(decided(out).values()) == {"rate:ihuyi"}


def test_a_campaign_rate_holds_its_rows_beside_the_providers(runtime: Runtime) -> None:
    stored = rows_of(runtime, *(("ihuyi", n) for n in NUMBERS[:4]))
    # the campaign's rows as dispatch reads them; the last row belongs to no campaign
    rows = [dataclasses.replace(row, campaign_id=7) for row in stored[:3]]
    rows.append(stored[3])
    out = admit(runtime, rows, runtime.redis_now(), {7: parse_caps("1/second")})
    verdicts = decided(out)
    assert [verdicts[row.id] for row in rows] == ["go", *["rate:campaign:7"] * 2, "go"]
    assert [attempts_held(runtime, "ihuyi", n) for n in NUMBERS[:4]] == [1, 0, 0, 1]
