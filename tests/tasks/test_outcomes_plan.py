"""``outcomes.plan``, row by row of docs/codes.md: every documented code of every provider,
answered through that provider's own client, becomes the change and the effects the page
promises. The rows are real rows of a real store; ``plan`` itself touches nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from providers.base import Outcome, SendResult
from store import Change, Expect, NewNotification, NotificationRow, RouteLeg, Status
from tasks.calls import Unsent
from tasks.outcomes import Plan, plan
from tasks.runtime import Runtime
from tests.conftest import embedded_settings
from tests.providers.codes_doc import (
    CLIENTS,
    Row,
    actions,
    answered,
    bad_number_reason,
    blocked_seconds,
    rows,
    status_named,
)

NOW = 1_800_000_000.0
SENDING = rows("Sending")
UNDESCRIBED = rows("Answers no document describes (every provider)")
#: what the page says each outcome does to the notification, as a status
PROMISED = {outcome: status_named(action) for outcome, action in actions().items()}


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory, redis_base: str) -> Iterator[Runtime]:
    """A runtime for its settings and its store; ``plan`` never reaches its Redis."""
    directory: Path = tmp_path_factory.mktemp("plan")
    runtime = Runtime.build(embedded_settings(f"sqlite:///{directory / 'n.db'}", redis_base))
    yield runtime
    runtime.close()


def stored(rt: Runtime, provider: str, **fields: Any) -> Any:
    """A new row as the store hands it to dispatch."""
    (made,) = rt.notifications.insert(
        [NewNotification(provider, CLIENTS[provider][1].to, **fields)]
    )
    with rt.db.read() as conn:
        (row,) = rt.notifications.load(conn, [made.id])
    return row


@pytest.fixture(scope="module")
def rows_by_provider(rt: Runtime) -> dict[str, Any]:
    return {name: stored(rt, name, template="t") for name in CLIENTS}


def only_change(out: Plan) -> Change:
    (change,) = out.changes
    return change


def check_promise(out: Plan, row: Any, result: SendResult, outcome: Outcome, rt: Runtime) -> Change:
    """The one change ``out`` makes of ``row`` has the status docs/codes.md promises for
    ``outcome`` and the timing its action implies; returns it for row-specific checks."""
    change = only_change(out)
    assert change.id == row.id
    # written over this task's own ``sending`` only: a stale copy cannot land
    assert change.expect == Expect.sending(row.version + 1)
    assert out.effects.outcomes == [(row.provider, outcome.value)]
    settings = rt.settings
    if outcome is Outcome.ACCOUNT:
        # no route to move on to: the row waits for the circuit that opens for everyone
        assert change.to is Status.DEFERRED
        assert change.values["next_attempt_at"] == NOW + settings.circuit_cooldown
        assert set(out.effects.opens) == {row.provider}
        assert out.effects.opens[row.provider].startswith(result.code)
        return change
    assert change.to.value == PROMISED[outcome]
    assert out.effects.opens == {}
    if outcome is Outcome.ACCEPTED:
        assert change.values["provider_ref"] == result.ref
        assert change.values["next_attempt_at"] == NOW + settings.receipt_timeout
        assert out.sent_refs == ([(row.provider, result.ref)] if result.ref else [])
    elif outcome is Outcome.CAPPED:
        assert result.block_seconds
        assert change.values["next_attempt_at"] == NOW + result.block_seconds
        assert out.effects.blocks == [(row.provider, row.to, result.block_seconds)]
    elif outcome is Outcome.TRANSIENT:
        ceiling = min(settings.retry_max, settings.retry_base)  # the first attempt's
        assert ceiling / 2 <= out.countdown <= ceiling
        assert change.values["next_attempt_at"] == NOW + out.countdown
        assert out.retry_ids == [row.id]
    else:
        assert change.values["next_attempt_at"] is None  # final: nothing to wake it
    if outcome is not Outcome.CAPPED:
        assert change.values["provider_code"] == result.code
    if outcome is not Outcome.CAPPED and outcome is not Outcome.TRANSIENT:
        assert out.effects.blocks == []
    return change


@pytest.mark.parametrize("doc", SENDING, ids=lambda r: f"{r.provider}:{r.code}")
def test_each_documented_code_becomes_what_the_page_promises(
    doc: Row, rt: Runtime, rows_by_provider: dict[str, Any]
) -> None:
    row = rows_by_provider[doc.provider]
    result = answered(doc, row.id)
    outcome = Outcome(doc.result)
    assert result.outcome is outcome  # the client agrees with the page (test_codes_table)
    out = plan(rt, {row.id: row}, [result], NOW, probes=set())
    check_promise(out, row, result, outcome, rt)
    if outcome is Outcome.CAPPED:
        assert result.block_seconds == blocked_seconds(doc)
    why = bad_number_reason(doc)
    assert out.effects.bad_numbers == (
        [(row.provider, row.to, why, doc.code)] if why is not None else []
    )


@pytest.mark.parametrize("doc", UNDESCRIBED, ids=lambda r: r.code)
@pytest.mark.parametrize("provider", list(CLIENTS))
def test_each_undocumented_answer_becomes_what_the_page_promises(
    doc: Row, provider: str, rt: Runtime, rows_by_provider: dict[str, Any]
) -> None:
    row = rows_by_provider[provider]
    code = "31337" if doc.code == "undocumented" else doc.code
    result = SendResult(row.id, Outcome(doc.result), code, "no document")
    out = plan(rt, {row.id: row}, [result], NOW, probes=set())
    check_promise(out, row, result, Outcome(doc.result), rt)
    assert out.effects.bad_numbers == []


def as_read(row: NotificationRow, **fields: Any) -> NotificationRow:
    """``row`` as another read would have found it (more attempts, another version)."""
    return dataclasses.replace(row, **fields)


def test_an_account_refusal_moves_a_routed_row_to_its_next_leg(rt: Runtime) -> None:
    route = [
        {"provider": "jumdata", "template": "1001", "params": ["x"]},
        {"provider": "apispace-voice", "template": "v1"},
    ]
    row = stored(rt, "ihuyi", content="c", route=route)
    doc = next(r for r in SENDING if r.provider == "ihuyi" and r.result == "account")
    out = plan(rt, {row.id: row}, [answered(doc, row.id)], NOW, probes=set())
    change = only_change(out)
    assert change.to is Status.QUEUED
    assert change.expect == Expect.sending(row.version + 1)
    assert change.reason == f"failover:account:ihuyi:{doc.code}"
    assert change.values["provider"] == "jumdata"
    assert change.values["template"] == "1001"
    assert change.values["params"] == ["x"]
    assert change.values["route"] == [RouteLeg("apispace-voice", template="v1").to_json()]
    assert change.values["next_attempt_at"] == NOW
    assert set(out.effects.opens) == {"ihuyi"}  # the circuit opens all the same


def test_the_last_leg_hops_with_no_route_left(rt: Runtime) -> None:
    row = stored(rt, "ihuyi", content="c", route=[{"provider": "jumdata", "template": "1"}])
    doc = next(r for r in SENDING if r.provider == "ihuyi" and r.result == "account")
    change = only_change(plan(rt, {row.id: row}, [answered(doc, row.id)], NOW, probes=set()))
    assert change.values["provider"] == "jumdata"
    assert change.values["route"] is None


def test_a_transient_answer_on_the_last_attempt_fails_the_row(
    rt: Runtime, rows_by_provider: dict[str, Any]
) -> None:
    doc = next(r for r in SENDING if r.result == "transient")
    fresh = rows_by_provider[doc.provider]
    last = as_read(fresh, attempts=rt.settings.max_attempts - 1)
    out = plan(rt, {last.id: last}, [answered(doc, last.id)], NOW, probes=set())
    change = only_change(out)
    assert change.to is Status.FAILED
    assert f"gave up after {rt.settings.max_attempts} attempts" in (change.reason or "")
    assert out.retry_ids == []
    # one attempt fewer: retried, its backoff grown with the attempt number
    before = as_read(fresh, attempts=rt.settings.max_attempts - 2)
    out = plan(rt, {before.id: before}, [answered(doc, before.id)], NOW, probes=set())
    assert only_change(out).to is Status.RETRYING
    ceiling = min(rt.settings.retry_max, rt.settings.retry_base * 2**before.attempts)
    assert ceiling / 2 <= out.countdown <= ceiling


def test_an_ambiguous_answer_is_retried_when_the_operator_chose_resend(
    rt: Runtime, rows_by_provider: dict[str, Any]
) -> None:
    resend = dataclasses.replace(
        rt, settings=rt.settings.model_copy(update={"on_ambiguous": "resend"})
    )
    doc = next(r for r in SENDING if r.result == "ambiguous")
    row = rows_by_provider[doc.provider]
    out = plan(resend, {row.id: row}, [answered(doc, row.id)], NOW, probes=set())
    assert only_change(out).to is Status.RETRYING
    assert out.retry_ids == [row.id]


def test_a_call_that_never_left_waits_again_at_once_its_attempt_uncounted(
    rt: Runtime, rows_by_provider: dict[str, Any]
) -> None:
    row = rows_by_provider["ihuyi"]
    late = SendResult(row.id, Outcome.TRANSIENT, "net:Late", "not let leave")
    out = plan(rt, {row.id: row}, [late], NOW, probes=set(), unsent={row.id: Unsent.LATE})
    change = only_change(out)
    assert change.to is Status.DEFERRED
    assert change.values == {"next_attempt_at": NOW, "attempts": row.attempts}
    assert out.effects.unsent == [row.id]  # its cap slots go back
    assert out.retry_ids == []


def test_an_accepted_probe_closes_its_circuit_and_others_do_not(
    rt: Runtime, rows_by_provider: dict[str, Any]
) -> None:
    row = rows_by_provider["jumdata"]
    doc = next(r for r in SENDING if r.provider == "jumdata" and r.result == "accepted")
    probe = plan(rt, {row.id: row}, [answered(doc, row.id)], NOW, probes={"jumdata"})
    assert probe.effects.closes == {"jumdata"}
    plain = plan(rt, {row.id: row}, [answered(doc, row.id)], NOW, probes={"ihuyi"})
    assert plain.effects.closes == set()


def test_a_batch_of_answers_plans_each_row_once(
    rt: Runtime, rows_by_provider: dict[str, Any]
) -> None:
    """One answer per row of a batch, of every outcome: one change per row."""
    picked = {r.result: r for r in SENDING if r.provider == "ihuyi"}
    batch = {doc.result: stored(rt, "ihuyi", content="c") for doc in picked.values()}
    results = [answered(doc, batch[doc.result].id) for doc in picked.values()]
    out = plan(rt, {row.id: row for row in batch.values()}, results, NOW, probes=set())
    assert sorted(c.id for c in out.changes) == sorted(row.id for row in batch.values())
    by_id = {c.id: c.to for c in out.changes}
    for outcome, row in batch.items():
        promised = PROMISED[Outcome(outcome)] or Status.DEFERRED.value
        assert by_id[row.id].value == promised


def test_a_duplicate_answer_lands_once_and_a_stale_copys_not_at_all(rt: Runtime) -> None:
    """Two copies of one task plan from the same read: the first change lands, the second
    finds the row moved on; a copy that read an older episode never lands."""
    row = stored(rt, "ihuyi", content="c")
    (sending,) = rt.notifications.transition(
        [Change(row.id, Status.SENDING, Expect.row(row), count_attempt=True)], now=NOW
    )
    assert sending.to is Status.SENDING
    doc = next(r for r in SENDING if r.provider == "ihuyi" and r.result == "accepted")
    # a copy that read the row one episode later than it is (it never wrote this sending)
    stale = plan(
        rt,
        {row.id: as_read(row, version=row.version + 1)},
        [answered(doc, row.id)],
        NOW,
        probes=set(),
    )
    assert rt.notifications.transition(stale.changes, now=NOW) == []
    first = plan(rt, {row.id: row}, [answered(doc, row.id)], NOW, probes=set())
    again = plan(rt, {row.id: row}, [answered(doc, row.id)], NOW, probes=set())
    assert [a.to for a in rt.notifications.transition(first.changes, now=NOW)] == [Status.SENT]
    assert rt.notifications.transition(again.changes, now=NOW) == []
    current = rt.notifications.get(row.id)
    assert current is not None and current.status == Status.SENT
