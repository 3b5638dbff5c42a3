"""The one place an outcome becomes an action (DESIGN.md, step 4).

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from providers.base import Outcome, SendResult
from tasks.admission import Hop, Wait
from tasks.runtime import Runtime
from worker.store import Change, Expect, Status


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


def backoff(settings: Any, attempt: int) -> float:
    """Exponential in the attempt number, with jitter so a burst of failures spreads out."""
    ceiling = min(settings.retry_max, settings.retry_base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def hop_change(hop: Hop, now: float, expect: Expect) -> Change:
    leg = hop.leg
    return Change(
        id=hop.id,
        to=Status.QUEUED,
        expect=expect,
        reason=f"failover:{hop.reason}",
        values={
            "provider": leg["provider"],
            "template": leg.get("template"),
            "content": leg.get("content"),
            "params": list(leg.get("params") or []),
            "options": dict(leg.get("options") or {}),
            "route": hop.rest or None,
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


def sending_expect(row: Any) -> Expect:
    """What a change after the call expects: the ``sending`` this task wrote, one version
    after the row it read."""
    return Expect.sending(int(row.version) + 1)


def plan(
    rt: Runtime,
    rows: dict[int, Any],
    results: Sequence[SendResult],
    now: float,
    probes: set[str],
    unsent: set[int] = frozenset(),  # type: ignore[assignment]
) -> Plan:
    """Decide what every answer means; ``unsent`` are the ids whose request never left."""
    out = Plan()
    settings = rt.settings
    retry_attempts = 0
    for result in results:
        row = rows[result.message_id]
        provider = row.provider
        attempts = row.attempts + 1  # counted when it went to "sending"
        expect = sending_expect(row)
        out.effects.outcomes.append((provider, result.outcome.value))
        if row.id in unsent:
            out.effects.unsent.append(row.id)
        detail = {"code": result.code, "message": result.detail[:200]}
        if result.outcome is Outcome.ACCEPTED:
            out.changes.append(
                Change(
                    id=row.id,
                    to=Status.SENT,
                    expect=expect,
                    detail=detail,
                    values={
                        "provider_ref": result.ref,
                        "provider_code": result.code,
                        # a sent row's deadline for its receipt (the sweeper's clue)
                        "next_attempt_at": now + settings.receipt_timeout,
                    },
                )
            )
            if result.ref:
                out.sent_refs.append((provider, result.ref))
            if provider in probes:
                out.effects.closes.add(provider)
        elif result.outcome is Outcome.PERMANENT:
            out.changes.append(
                _failed(row, f"{provider}:{result.code} {result.detail}", result, detail)
            )
        elif result.outcome is Outcome.CAPPED:
            seconds = result.block_seconds or 60.0
            out.effects.blocks.append((provider, row.to, seconds))
            out.waits.append(Wait(row.id, now + seconds, f"cap:{provider}:provider-{result.code}"))
        elif result.outcome is Outcome.ACCOUNT:
            out.effects.opens.setdefault(provider, f"{result.code} {result.detail}")
            reopen = now + settings.circuit_cooldown
            if row.route:
                leg, *rest = row.route
                out.hops.append(Hop(row.id, leg, rest, f"account:{provider}:{result.code}"))
            else:
                out.waits.append(Wait(row.id, reopen, f"circuit:{provider}"))
        elif result.outcome is Outcome.TRANSIENT or (
            result.outcome is Outcome.AMBIGUOUS and settings.on_ambiguous == "resend"
        ):
            if attempts >= settings.max_attempts:
                reason = f"{provider}:{result.code} gave up after {attempts} attempts"
                out.changes.append(_failed(row, reason, result, detail))
            else:
                retry_attempts = max(retry_attempts, attempts)
                out.retry_ids.append(row.id)
        else:  # ambiguous, and the operator did not choose to resend
            out.changes.append(
                Change(
                    id=row.id,
                    to=Status.UNKNOWN,
                    expect=expect,
                    detail=detail,
                    reason=f"{provider}:{result.code} the call may have been placed",
                    values={"provider_code": result.code, "next_attempt_at": None},
                )
            )
    if out.retry_ids:
        out.countdown = backoff(settings, retry_attempts)
        for notification_id in out.retry_ids:
            result_code = next(r.code for r in results if r.message_id == notification_id)
            out.changes.append(
                Change(
                    id=notification_id,
                    to=Status.RETRYING,
                    expect=sending_expect(rows[notification_id]),
                    reason=f"{rows[notification_id].provider}:{result_code}",
                    values={"next_attempt_at": now + out.countdown, "provider_code": result_code},
                )
            )
    out.changes += [wait_change(w, sending_expect(rows[w.id])) for w in out.waits]
    out.changes += [hop_change(h, now, sending_expect(rows[h.id])) for h in out.hops]
    return out


def _failed(row: Any, reason: str, result: SendResult, detail: dict[str, Any]) -> Change:
    return Change(
        id=row.id,
        to=Status.FAILED,
        expect=sending_expect(row),
        reason=reason[:255],
        detail=detail,
        values={"provider_code": result.code, "next_attempt_at": None},
    )
