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
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from providers.base import Outcome, SendResult
from tasks.admission import Hop, Wait
from tasks.runtime import Runtime
from worker.metrics import PROVIDER_CALLS
from worker.store import Change, Status


@dataclass
class Plan:
    """What to write, and what to do once it is written."""

    changes: list[Change] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)
    retry_ids: list[int] = field(default_factory=list)
    countdown: float = 0.0
    sent_refs: list[tuple[str, str]] = field(default_factory=list)


def backoff(settings: Any, attempt: int) -> float:
    """Exponential in the attempt number, with jitter so a burst of failures spreads out."""
    ceiling = min(settings.retry_max, settings.retry_base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def hop_change(hop: Hop, now: float) -> Change:
    leg = hop.leg
    return Change(
        id=hop.id,
        to=Status.QUEUED,
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


def wait_change(wait: Wait) -> Change:
    return Change(
        id=wait.id, to=Status.DEFERRED, reason=wait.reason, values={"next_attempt_at": wait.until}
    )


def plan(
    rt: Runtime, rows: dict[int, Any], results: Sequence[SendResult], now: float, probes: set[str]
) -> Plan:
    out = Plan()
    settings = rt.settings
    retry_attempts = 0
    for result in results:
        row = rows[result.message_id]
        provider = row.provider
        attempts = row.attempts + 1  # counted when it went to "sending"
        PROVIDER_CALLS.labels(provider, result.outcome.value).inc()
        detail = {"code": result.code, "message": result.detail[:200]}
        if result.outcome is Outcome.ACCEPTED:
            out.changes.append(
                Change(
                    id=row.id,
                    to=Status.SENT,
                    detail=detail,
                    values={
                        "provider_ref": result.ref,
                        "provider_code": result.code,
                        "next_attempt_at": None,
                    },
                )
            )
            if result.ref:
                out.sent_refs.append((provider, result.ref))
            if provider in probes:
                rt.circuit.close(provider)
                probes.discard(provider)
        elif result.outcome is Outcome.PERMANENT:
            out.changes.append(
                _failed(row, f"{provider}:{result.code} {result.detail}", result, detail)
            )
        elif result.outcome is Outcome.CAPPED:
            until = rt.caps.block(provider, row.to, result.block_seconds or 60.0)
            out.waits.append(Wait(row.id, until, f"cap:{provider}:provider-{result.code}"))
        elif result.outcome is Outcome.ACCOUNT:
            reopen = rt.circuit.open(provider, f"{result.code} {result.detail}", now)
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
                    reason=f"{rows[notification_id].provider}:{result_code}",
                    values={"next_attempt_at": now + out.countdown, "provider_code": result_code},
                )
            )
    out.changes += [wait_change(w) for w in out.waits]
    out.changes += [hop_change(h, now) for h in out.hops]
    return out


def _failed(row: Any, reason: str, result: SendResult, detail: dict[str, Any]) -> Change:
    return Change(
        id=row.id,
        to=Status.FAILED,
        reason=reason[:255],
        detail=detail,
        values={"provider_code": result.code, "next_attempt_at": None},
    )
