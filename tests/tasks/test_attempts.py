"""A dispatch's cap slots in their one owner (tasks/attempts.py), on a real Redis: a
request in time leaves on its slot without a word to Redis, a late one is admitted again
at the moment it can leave, or refused if its number's room was taken meanwhile, and what
did not leave goes back."""

from __future__ import annotations

from dataclasses import replace

from scheduler.caps import Decision
from scheduler.limits import parse_caps
from tasks.attempts import MAX_RENEWALS, Attempts
from tasks.runtime import Runtime
from tests.tasks.test_admission import NUMBERS, attempts_held, rows_of


def _attempts(rt: Runtime, margin: float) -> Attempts:
    return Attempts(rt.caps, rt.policies, margin)


def test_a_request_in_time_leaves_on_the_slot_it_took(runtime: Runtime) -> None:
    (row,) = rows_of(runtime, ("ihuyi", NUMBERS[0]))
    attempts = _attempts(runtime, margin=60.0)
    assert attempts.take([row]) == []
    taken = attempts.slots
    assert attempts.may_write([[row.id]])([0]) == [True]
    assert attempts.slots == taken  # not renewed: the same stamp
    assert attempts_held(runtime, "ihuyi", NUMBERS[0]) == 1
    assert attempts.detail(row.id) == {"cap_at": taken[row.id].stamp_ms}


def test_a_late_request_is_admitted_again_when_it_can_leave(runtime: Runtime) -> None:
    """No margin: every request is past its deadline when it asks. Its slot is given
    back and taken anew, so the number holds one attempt, stamped no earlier."""
    (row,) = rows_of(runtime, ("ihuyi", NUMBERS[1]))
    attempts = _attempts(runtime, margin=0.0)
    attempts.take([row])
    first = attempts.slots[row.id]
    assert attempts.may_write([[row.id]])([0]) == [True]
    again = attempts.slots[row.id]
    assert again.allowed and again.now >= first.now
    assert attempts_held(runtime, "ihuyi", NUMBERS[1]) == 1


def test_a_late_request_whose_number_was_taken_meanwhile_does_not_leave(
    runtime: Runtime,
) -> None:
    """Two numbers in one request: one of them was taken by another attempt while the
    request waited. The request is refused, holds no slot, and the fresh slot of its
    other number goes back; the other attempt's slot stands."""
    one, two = rows_of(runtime, ("ihuyi", NUMBERS[2]), ("ihuyi", NUMBERS[3]))
    # one call a day: the other attempt's slot still stands at the renewal however long
    # a loaded machine stalls between the two (ihuyi's 1/second would free it after 1 s)
    caps = parse_caps("1/day")
    policies = {"ihuyi": replace(runtime.policies["ihuyi"], caps=caps)}
    attempts = Attempts(runtime.caps, policies, 0.0)
    attempts.take([one, two])
    # our slot aged out of the number's room (here: given back by hand) and another
    # attempt took it
    runtime.caps.refund("ihuyi", NUMBERS[2], attempts.slots[one.id])
    assert runtime.caps.hit("ihuyi", NUMBERS[2], caps).allowed
    assert attempts.may_write([[one.id, two.id]])([0]) == [False]
    assert attempts.slots == {}
    assert attempts_held(runtime, "ihuyi", NUMBERS[2]) == 1  # the other attempt's
    assert attempts_held(runtime, "ihuyi", NUMBERS[3]) == 0


def test_a_request_renewed_too_often_is_refused(runtime: Runtime) -> None:
    """A loop so busy that each fresh margin runs out before the request is written."""
    (row,) = rows_of(runtime, ("jumdata", NUMBERS[4]))
    attempts = _attempts(runtime, margin=0.0)
    attempts.take([row])
    ask = attempts.may_write([[row.id]])
    assert [ask([0]) for _ in range(MAX_RENEWALS)] == [[True]] * MAX_RENEWALS
    assert ask([0]) == [False]
    assert attempts.slots == {}
    assert attempts_held(runtime, "jumdata", NUMBERS[4]) == 0


def test_what_did_not_leave_goes_back_and_what_left_stays(runtime: Runtime) -> None:
    rows = rows_of(runtime, *(("ihuyi", n) for n in NUMBERS[5:8]))
    attempts = _attempts(runtime, margin=60.0)
    attempts.take(rows)
    left, *unsent = rows
    attempts.give_back([row.id for row in unsent])
    attempts.give_back([row.id for row in unsent])  # twice: nothing more goes back
    assert list(attempts.slots) == [left.id]
    assert [attempts_held(runtime, "ihuyi", n) for n in NUMBERS[5:8]] == [1, 0, 0]
    assert isinstance(attempts.slots[left.id], Decision)


def test_a_refused_row_holds_no_slot(runtime: Runtime) -> None:
    first, second = rows_of(runtime, ("ihuyi", NUMBERS[8]), ("ihuyi", NUMBERS[8]))
    attempts = _attempts(runtime, margin=60.0)
    ((refused, decision),) = attempts.take([first, second])
    assert refused.id == second.id and not decision.allowed
    assert [row.id for row in attempts.admitted] == [first.id]
