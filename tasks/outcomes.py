"""The one place an outcome becomes an action (docs/codes.md: each code's outcome).

================  =====================================================================
outcome           action
================  =====================================================================
accepted          ``sent`` with the provider's reference; a waiting receipt is applied
permanent         ``failed`` with the provider's code
capped            the number is blocked in our cap state for the provider's window;
                  ``deferred`` until then
account           the provider's circuit opens for everyone; this one moves to the
                  next provider of its route, or waits ``deferred`` for the circuit
transient         ``retrying`` with exponential backoff and jitter (a Celery retry, so
                  Flower shows it) until ``max_attempts``; then ``failed``
ambiguous         ``unknown`` — or, with ``NOTIFYQ_ON_AMBIGUOUS=resend``, retried
(late)            the request was not let leave (:attr:`Unsent.LATE`, tasks/attempts.py):
                  back to ``deferred`` at once, the attempt uncounted and its cap slot
                  given back — sent late it could break the per-number margin
================  =====================================================================

:func:`plan` only decides: it touches neither Redis nor the store. Once a provider has
answered, its outcome must be committed before anything that can fail (Redis for a cap
block or the circuit, metrics); those follow the commit as :class:`Effects`, and a
failure among them costs a refinement (the sweeper re-drives a deferral that missed
the deferred set; a lost block is learnt again from the provider), never the answer.
Every change after a call expects ``sending`` at the version this task's own
``sending`` write made: a stale copy cannot write over a newer attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from config.settings import Settings
from providers.base import Outcome, SendResult
from store import Change, Expect, NotificationRow, Status
from store.verifications import erased
from tasks.admission import Hop, Wait
from tasks.calls import Unsent
from tasks.runtime import Runtime

#: a change to one of these ends the send: nothing will call the number for it again
SEND_FINAL = frozenset({Status.SENT, Status.FAILED, Status.UNKNOWN})


@dataclass
class Effects:
    """What a batch's answers ask of Redis once their outcomes are committed."""

    #: (provider, number, seconds): the provider refused the number for a cap
    blocks: list[tuple[str, str, float]] = field(default_factory=list)
    #: provider → why: an account-wide refusal opens its circuit
    opens: dict[str, str] = field(default_factory=dict)
    #: providers whose half-open probe was accepted
    closes: set[str] = field(default_factory=set)
    #: ids whose request never left: their cap slots go back
    unsent: list[int] = field(default_factory=list)
    #: (provider, outcome) per answer, for the calls counter
    outcomes: list[tuple[str, str]] = field(default_factory=list)
    #: (provider, number, why, code): the provider called the number bad; suppressed once
    #: the answer is committed (tasks/suppressions.py)
    bad_numbers: list[tuple[str, str, str, str]] = field(default_factory=list)


@dataclass
class Plan:
    """What to write, and what to do once it is written."""

    changes: list[Change] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)
    retry_ids: list[int] = field(default_factory=list)
    countdown: float = 0.0
    sent_refs: list[tuple[str, str]] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)


@dataclass(frozen=True)
class Moment:
    """What every answer of one batch is decided against."""

    now: float
    settings: Settings
    #: providers whose half-open probe this batch sent
    probes: frozenset[str]


def backoff(settings: Settings, attempt: int) -> float:
    """Exponential in the attempt number, with jitter so a burst of failures spreads out."""
    ceiling = min(settings.retry_max, settings.retry_base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def hop_change(hop: Hop, now: float, expect: Expect) -> Change:
    """The row moves to its next leg: that leg's provider and what to send through it,
    the legs after it as its route."""
    leg = hop.leg
    return Change(
        id=hop.id,
        to=Status.QUEUED,
        expect=expect,
        reason=f"failover:{hop.reason}",
        values={
            "provider": leg.provider,
            "template": leg.template,
            "content": leg.content,
            "params": list(leg.params),
            "options": dict(leg.options),
            "route": [later.to_json() for later in hop.rest] or None,
            "next_attempt_at": now,
            "published_at": now,
        },
    )


def wait_change(wait: Wait, expect: Expect) -> Change:
    return Change(
        id=wait.id,
        to=Status.DEFERRED,
        expect=expect,
        reason=wait.reason,
        values={"next_attempt_at": wait.until},
    )


def sending_expect(row: NotificationRow) -> Expect:
    """What a change after the call expects: the ``sending`` this task wrote, one version
    after the row it read."""
    return Expect.sending(int(row.version) + 1)


def _erase_when_final(change: Change, row: NotificationRow) -> Change:
    """A change that ends the send of a row carrying a secret (a verification code) also
    clears the code's columns: in the same transaction as the final status, so no reader
    ever sees a final row that still holds it, and a crash cannot leave one behind."""
    if change.to not in SEND_FINAL or not erased(row):
        return change
    return replace(change, values={**change.values, **erased(row)})


def plan(
    rt: Runtime,
    rows: dict[int, NotificationRow],
    results: Sequence[SendResult],
    now: float,
    probes: set[str],
    unsent: Mapping[int, Unsent] | None = None,
) -> Plan:
    """Decide what every answer means; ``unsent``: the ids whose request never left, and
    why (tasks/calls.py)."""
    unsent = unsent or {}
    out = Plan()
    moment = Moment(now, rt.settings, frozenset(probes))
    for result in results:
        row = rows[result.message_id]
        out.effects.outcomes.append((row.provider, result.outcome.value))
        if row.id in unsent:
            out.effects.unsent.append(row.id)
        if result.bad_number and result.outcome is Outcome.PERMANENT:
            out.effects.bad_numbers.append((row.provider, row.to, result.bad_number, result.code))
        if unsent.get(row.id) is Unsent.LATE:
            _late(out, row, now)
        else:
            _DECIDE[result.outcome](out, row, result, moment)
    written = {c.id for c in out.changes}
    if out.retry_ids:
        out.countdown = backoff(rt.settings, max(rows[i].attempts + 1 for i in out.retry_ids))
        codes = {r.message_id: r.code for r in results}
        out.changes += [
            Change(
                id=i,
                to=Status.RETRYING,
                expect=sending_expect(rows[i]),
                reason=f"{rows[i].provider}:{codes[i]}",
                values={"next_attempt_at": now + out.countdown, "provider_code": codes[i]},
            )
            for i in out.retry_ids
        ]
    out.changes += [
        wait_change(w, sending_expect(rows[w.id])) for w in out.waits if w.id not in written
    ]
    out.changes += [hop_change(h, now, sending_expect(rows[h.id])) for h in out.hops]
    # the send is final: a code it carried leaves the ledger in the same write
    out.changes = [_erase_when_final(c, rows[c.id]) for c in out.changes]
    return out


def _detail(result: SendResult) -> dict[str, str]:
    return {"code": result.code, "message": result.detail[:200]}


def _accepted(out: Plan, row: NotificationRow, result: SendResult, at: Moment) -> None:
    out.changes.append(
        _from_sending(
            row,
            Status.SENT,
            detail=_detail(result),
            values={
                "provider_ref": result.ref,
                "provider_code": result.code,
                # a sent row's deadline for its receipt (the sweeper's clue)
                "next_attempt_at": at.now + at.settings.receipt_timeout,
            },
        )
    )
    if result.ref:
        out.sent_refs.append((row.provider, result.ref))
    if row.provider in at.probes:
        out.effects.closes.add(row.provider)


def _permanent(out: Plan, row: NotificationRow, result: SendResult, at: Moment) -> None:
    reason = f"{row.provider}:{result.code} {result.detail}"
    out.changes.append(_failed(row, reason, result, _detail(result)))


def _capped(out: Plan, row: NotificationRow, result: SendResult, at: Moment) -> None:
    seconds = result.block_seconds or 60.0
    out.effects.blocks.append((row.provider, row.to, seconds))
    out.waits.append(Wait(row.id, at.now + seconds, f"cap:{row.provider}:provider-{result.code}"))


def _account(out: Plan, row: NotificationRow, result: SendResult, at: Moment) -> None:
    out.effects.opens.setdefault(row.provider, f"{result.code} {result.detail}")
    if row.route:
        out.hops.append(Hop.onward(row, f"account:{row.provider}:{result.code}"))
    else:
        out.waits.append(
            Wait(row.id, at.now + at.settings.circuit_cooldown, f"circuit:{row.provider}")
        )


def _transient(out: Plan, row: NotificationRow, result: SendResult, at: Moment) -> None:
    attempts = row.attempts + 1  # counted when it went to "sending"
    if attempts >= at.settings.max_attempts:
        reason = f"{row.provider}:{result.code} gave up after {attempts} attempts"
        out.changes.append(_failed(row, reason, result, _detail(result)))
    else:
        out.retry_ids.append(row.id)


def _ambiguous(out: Plan, row: NotificationRow, result: SendResult, at: Moment) -> None:
    if at.settings.on_ambiguous == "resend":  # the operator's choice
        _transient(out, row, result, at)
        return
    out.changes.append(
        _from_sending(
            row,
            Status.UNKNOWN,
            detail=_detail(result),
            reason=f"{row.provider}:{result.code} the call may have been placed",
            values={"provider_code": result.code, "next_attempt_at": None},
        )
    )


def _late(out: Plan, row: NotificationRow, now: float) -> None:
    """Not let leave: back to waiting at once, the attempt uncounted (its cap slot goes
    back as ``unsent``), so an overload cannot wear out ``max_attempts``."""
    late = Wait(row.id, now, f"late:{row.provider}")
    out.waits.append(late)
    out.changes.append(
        _from_sending(
            row,
            Status.DEFERRED,
            reason=late.reason,
            values={"next_attempt_at": now, "attempts": row.attempts},
        )
    )


_DECIDE: dict[Outcome, Callable[[Plan, NotificationRow, SendResult, Moment], None]] = {
    Outcome.ACCEPTED: _accepted,
    Outcome.PERMANENT: _permanent,
    Outcome.CAPPED: _capped,
    Outcome.ACCOUNT: _account,
    Outcome.TRANSIENT: _transient,
    Outcome.AMBIGUOUS: _ambiguous,
}


def _from_sending(
    row: NotificationRow,
    to: Status,
    *,
    values: Mapping[str, object],
    reason: str | None = None,
    detail: Mapping[str, str] | None = None,
) -> Change:
    """A change of a row this attempt made ``sending``: it lands only on that version."""
    return Change(
        id=row.id, to=to, expect=sending_expect(row), reason=reason, values=values, detail=detail
    )


def _failed(
    row: NotificationRow, reason: str, result: SendResult, detail: dict[str, str]
) -> Change:
    return _from_sending(
        row,
        Status.FAILED,
        reason=reason[:255],
        detail=detail,
        values={"provider_code": result.code, "next_attempt_at": None},
    )
