"""``notifyq.dispatch(ids)``: admit, mark ``sending``, call, record — for one or many ids.

A task carries notification ids only. It may arrive twice (a redelivery after a worker
died, the sweeper re-driving a lost message), so it first reads each row and acts only
on what is still waiting; a row already ``sending`` belongs to whoever marked it, until
the sending timeout says that worker is gone.

The order is the one that keeps a phone from ringing twice: the row is committed as
``sending`` *before* the request leaves, so whatever happens next, no later task will
call that number again for this notification unless the operator chose ``resend``.

Many ids in one task (campaigns, the pump, batch enqueues) share one read, one cap
round trip, concurrent HTTP calls and one write; each notification keeps its own
state, caps, attempts and retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Task

from providers.base import mask
from tasks.admission import Hop, Wait, admit
from tasks.calls import call_providers
from tasks.campaigns import CampaignState, campaign_states
from tasks.outcomes import hop_change, plan, wait_change
from tasks.publish import publish_dispatch
from tasks.runtime import Runtime, get_runtime
from worker.app import celery
from worker.metrics import DEFERRALS, RETRIES, TRANSITIONS
from worker.store import Applied, Change, Status
from worker.store.campaigns import CANCELLED, RUNNING

log = logging.getLogger(__name__)

#: a row due within this much is sent now (clock jitter between workers and Redis)
EARLY_SLACK = 1.0


@dataclass
class Report:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    retry_ids: list[int] = field(default_factory=list)
    countdown: float = 0.0

    def summary(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "skipped": self.skipped,
            "retrying": len(self.retry_ids),
        }


@celery.task(name="notifyq.dispatch", bind=True, max_retries=None)
def dispatch(self: Task, ids: list[int]) -> dict[str, int]:
    report = dispatch_ids(get_runtime(), ids)
    if report.retry_ids:
        RETRIES.labels("any").inc(len(report.retry_ids))
        raise self.retry(args=[report.retry_ids], countdown=report.countdown)
    return report.summary()


def dispatch_ids(rt: Runtime, ids: Sequence[int]) -> Report:
    report = Report()
    now = rt.redis_now()
    with rt.db.read() as conn:
        rows = rt.notifications.load(conn, ids)
    campaign_ids = {row.campaign_id for row in rows if row.campaign_id is not None}
    states = campaign_states(rt, campaign_ids) if campaign_ids else {}
    ready, stuck, early, held = _triage(rt, rows, now, report, states)
    if held:
        _write(rt, held)
    if stuck:
        resolve_stuck_sending(rt, [row.id for row in stuck])
    if early:
        rt.deferred.add((row.id, row.next_attempt_at) for row in early)
    if not ready:
        return report
    admission = admit(rt, ready, now, {i: state.rate for i, state in states.items()})
    changes = [wait_change(w) for w in admission.waits] + [
        hop_change(h, now) for h in admission.hops
    ]
    changes += [Change(id=row.id, to=Status.SENDING, count_attempt=True) for row in admission.go]
    applied = _write(rt, changes)
    moved = {a.id for a in applied if a.to is Status.SENDING}
    _after_write(rt, admission.waits, admission.hops, applied)
    report.deferred += len(admission.waits)
    sending = [row for row in admission.go if row.id in moved]
    report.skipped += len(admission.go) - len(sending)
    if not sending:
        return report
    results = call_providers(rt, sending)
    rows_by_id = {row.id: row for row in sending}
    outcome_plan = plan(rt, rows_by_id, results, rt.redis_now(), admission.probes)
    applied = _write(rt, outcome_plan.changes, sent_refs=outcome_plan.sent_refs)
    _after_write(rt, outcome_plan.waits, outcome_plan.hops, applied)
    report.sent += sum(1 for a in applied if a.to is Status.SENT)
    report.failed += sum(1 for a in applied if a.to in (Status.FAILED, Status.UNKNOWN))
    report.deferred += len(outcome_plan.waits)
    retrying = {a.id for a in applied if a.to is Status.RETRYING}
    report.retry_ids = [i for i in outcome_plan.retry_ids if i in retrying]
    report.countdown = outcome_plan.countdown
    return report


def _triage(
    rt: Runtime, rows: Sequence[Any], now: float, report: Report, states: dict[int, CampaignState]
) -> tuple[list[Any], list[Any], list[Any], list[Change]]:
    """Sort a batch: ready to admit, stuck in ``sending``, woken early, and rows of a
    campaign that is not running (paused: back to its pool; cancelled: cancelled)."""
    ready: list[Any] = []
    stuck: list[Any] = []
    early: list[Any] = []
    held: list[Change] = []
    sending_deadline = time.time() - rt.settings.sending_timeout
    for row in rows:
        status = Status(row.status)
        if status is Status.SENDING:
            if row.updated_at <= sending_deadline:
                stuck.append(row)
            else:
                report.skipped += 1
        elif not status.is_waiting:
            report.skipped += 1
        elif row.campaign_id is not None and states[row.campaign_id].status != RUNNING:
            held.append(_hold(row, states[row.campaign_id].status))
            report.skipped += 1
        elif row.next_attempt_at is not None and row.next_attempt_at > now + EARLY_SLACK:
            early.append(row)
            report.skipped += 1
        else:
            ready.append(row)
    return ready, stuck, early, held


def _hold(row: Any, campaign_status: str) -> Change:
    if campaign_status == CANCELLED:
        return Change(
            row.id, Status.CANCELLED, reason="campaign:cancelled", values={"next_attempt_at": None}
        )
    # paused (or not started): back to the campaign's pool, released again on resume
    return Change(
        row.id, Status.QUEUED, reason=f"campaign:{campaign_status}", values={"published_at": None}
    )


def _write(
    rt: Runtime, changes: list[Change], *, sent_refs: Sequence[tuple[str, str]] = ()
) -> list[Applied]:
    if not changes:
        return []
    with rt.db.write() as conn:
        applied = rt.notifications.transition(changes, conn=conn)
        if sent_refs:
            applied += rt.receipts.apply(conn, list(sent_refs), time.time())
    return applied


def _after_write(
    rt: Runtime, waits: Sequence[Wait], hops: Sequence[Hop], applied: Sequence[Applied]
) -> None:
    """Once committed: waits go to the deferred set, hops to the queue, counters tick."""
    done = {(a.id, a.to) for a in applied}
    rows = {a.id for a in applied}
    for a in applied:
        TRANSITIONS.labels("all", a.to.value).inc()
    deferred = [(w.id, w.until) for w in waits if (w.id, Status.DEFERRED) in done]
    for w in waits:
        if w.id in rows:
            DEFERRALS.labels("all", w.reason.split(":")[0]).inc()
    if deferred:
        rt.deferred.add(deferred)
    hopped = [h.id for h in hops if (h.id, Status.QUEUED) in done]
    if hopped:
        publish_dispatch(rt.celery, hopped, batch=rt.settings.dispatch_batch)


def resolve_stuck_sending(rt: Runtime, ids: Sequence[int]) -> list[Applied]:
    """Rows left ``sending`` by a lost worker: the call may or may not have gone out."""
    if rt.settings.on_ambiguous == "resend":
        changes = [
            Change(
                id=i,
                to=Status.RETRYING,
                reason="worker lost mid-call; resending (operator's choice)",
                values={"next_attempt_at": time.time()},
                expect=frozenset({Status.SENDING}),
            )
            for i in ids
        ]
    else:
        changes = [
            Change(
                id=i,
                to=Status.UNKNOWN,
                reason="worker lost mid-call; the call may have been placed",
                values={"next_attempt_at": None},
                expect=frozenset({Status.SENDING}),
            )
            for i in ids
        ]
    applied = rt.notifications.transition(changes)
    for a in applied:
        log.warning("notification %s was left sending by a lost worker: now %s", a.id, a.to)
    if rt.settings.on_ambiguous == "resend" and applied:
        publish_dispatch(rt.celery, [a.id for a in applied], batch=rt.settings.dispatch_batch)
    return applied


def describe(row: Any) -> str:
    """For log lines: the id, the provider and the masked number — never the number."""
    return f"#{row.id} {row.provider} {mask(row.to)}"
