"""``notifyq.dispatch(ids)``: admit, mark ``sending``, call, record — for one or many ids.

A task carries notification ids only. It may arrive twice (a redelivery after a worker
died, the sweeper re-driving a lost message), so it first reads each row and acts only
on what is still waiting; a row already ``sending`` belongs to whoever marked it, until
the sending timeout says that worker is gone.

The order is the one that keeps a phone from ringing twice: the row is committed as
``sending`` *before* the request leaves, so whatever happens next, no later task will
call that number again for this notification unless the operator chose ``resend``.

Two copies of one message may run at the same moment (Celery over Redis is
at-least-once). Each status write is a compare-and-set on the status *and version*
this task read (:class:`~store.notifications.Expect`), so of two copies that
read ``queued`` only one marks it ``sending``; and before admission each copy claims
the row's version (:mod:`scheduler.claims`), so the loser stops before it takes a cap
slot or writes a deferral. A cap slot taken by a copy that then loses anyway (its claim
expired, Redis lost it) is given back (tasks/attempts.py owns every slot).
docs/duplicates.md lists every way a task can run twice and the guard that stops it.

Once a provider has answered, the outcome is committed first — retried from memory if
the database refuses for a moment — and only then does Redis hear of it (blocks, the
circuit, deferrals, hops). A worker killed in between leaves the row ``sending``; the
sweeper makes it ``unknown``: never a second call.

Many ids in one task (campaigns, the pump, batch enqueues) share one read, one cap
round trip, concurrent HTTP calls and one write; each notification keeps its own
state, caps, attempts and retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from celery import Task
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from observe.metrics import DEFERRALS, PROVIDER_CALLS, RETRIES, TRANSITIONS
from providers.base import mask
from scheduler.priority import any_bulk
from store import Applied, Change, Expect, NotificationRow, Status
from store.campaigns import CANCELLED, RUNNING
from tasks import latency, suppressions, writes
from tasks.admission import Admission, Hop, Wait, admit
from tasks.attempts import Attempts
from tasks.calls import Answers, call_providers
from tasks.campaigns.control import CampaignState, campaign_states
from tasks.outcomes import Effects, hop_change, plan, wait_change
from tasks.publish import publish_by_priority
from tasks.runtime import Runtime, get_runtime
from worker.app import celery

log = logging.getLogger(__name__)

#: a row due within this much is sent now (clock jitter between workers and Redis)
EARLY_SLACK = 1.0
#: how long an answered call's outcome is retried against a database that refuses it
#: (locked, failing over) before the task gives up and the sweeper makes it ``unknown``
OUTCOME_WRITE_PATIENCE = 60.0


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
        raise self.retry(args=[report.retry_ids], countdown=report.countdown)
    return report.summary()


def dispatch_ids(rt: Runtime, ids: Sequence[int]) -> Report:
    """Read, triage, claim, admit, mark ``sending``, call, record: see the module docstring."""
    report = Report()
    for _ in dispatch_steps(rt, ids, report):
        pass
    return report


def dispatch_steps(rt: Runtime, ids: Sequence[int], report: Report) -> Iterator[str]:
    """One dispatch as its phases, each yielded where another copy of this task, the
    sweeper, the pump or an operator may act in between — or this worker may die.

    :func:`dispatch_ids` runs them straight through. The interleaving test
    (``tests/tasks/test_interleavings.py``) runs several copies side by side, phase by
    phase in every order, and abandons some half way (a crash), to show that no
    interleaving calls a number twice for one notification."""
    now = rt.redis_now()
    with rt.db.read() as conn:
        rows = rt.notifications.load(conn, ids)
    campaign_ids = {row.campaign_id for row in rows if row.campaign_id is not None}
    states = campaign_states(rt, campaign_ids) if campaign_ids else {}
    ready, stuck, early, held = _triage(rt, rows, now, report, states)
    yield "read"
    if held:  # a campaign's rows
        _write(rt, held, now, bulk=True)
    if stuck:
        resolve_stuck_sending(rt, stuck, now=now)
    if early:
        rt.deferred.add((row.id, row.next_attempt_at or now) for row in early)
    if not ready:
        return
    # no more calls admitted than this process can carry out within the cap margin
    # (tasks/budget.py): wait here, holding nothing, rather than in the HTTP pool later
    # (bulk within its share of it, so a code always finds units free)
    bulk = any_bulk(ready)
    units = rt.call_budget.take(len(ready), bulk=bulk)
    try:
        if campaign_ids:
            # the wait for units can be long behind a campaign: a pause or cancel made
            # meanwhile holds these rows now, not after every row already taken is sent
            states = campaign_states(rt, campaign_ids)
            ready, held = _still_running(ready, states, report)
            if held:
                _write(rt, held, now, bulk=True)
        yield from _claimed_onwards(rt, ready, now, states, report)
    finally:
        rt.call_budget.give(units, bulk=bulk)


def _claimed_onwards(
    rt: Runtime,
    ready: list[NotificationRow],
    now: float,
    states: Mapping[int, CampaignState],
    report: Report,
) -> Iterator[str]:
    """The phases of :func:`dispatch_steps` from the claim on, within the call budget."""
    won = rt.claims.take([(row.id, row.version) for row in ready])
    report.skipped += len(ready) - len(won)
    ready = [row for row in ready if row.id in won]
    if not ready:
        return
    yield "claimed"
    admission = admit(rt, ready, now, {i: state.rate for i, state in states.items()})
    attempts = admission.attempts
    read = {row.id: row for row in ready}
    changes = [wait_change(w, Expect.row(read[w.id])) for w in admission.waits]
    changes += [hop_change(h, now, Expect.row(read[h.id])) for h in admission.hops]
    changes += [  # suppressed numbers (tasks/suppressions.py): failed, never called
        Change(r.id, Status.FAILED, expect=Expect.row(read[r.id]), reason=r.reason, values=r.values)
        for r in admission.refusals
    ]
    changes += [
        Change(
            id=row.id,
            to=Status.SENDING,
            expect=Expect.row(row),
            count_attempt=True,
            detail=attempts.detail(row.id),  # the caps' floor reads it
        )
        for row in admission.go
    ]
    yield "admitted"
    bulk = any_bulk(ready)
    applied = _write(rt, changes, now, bulk=bulk)
    moved = {a.id for a in applied if a.to is Status.SENDING}
    _after_write(rt, admission.waits, admission.hops, applied, read)
    report.deferred += sum(1 for a in applied if a.to is Status.DEFERRED)
    report.failed += sum(1 for a in applied if a.to is Status.FAILED)
    sending = [row for row in admission.go if row.id in moved]
    lost = [row.id for row in admission.go if row.id not in moved]
    report.skipped += len(lost)
    attempts.give_back(lost)
    if not sending:
        return
    yield "sending"
    latency.record(rt, sending, time.time())
    # each request leaves within the cap margin of its numbers' admission, or is
    # admitted again, or is not sent (tasks/attempts.py)
    answers = call_providers(rt, sending, attempts)
    yield "answered"
    _record(rt, sending, answers, admission, report, bulk=bulk)
    yield "recorded"


def _record(
    rt: Runtime,
    sending: Sequence[NotificationRow],
    answers: Answers,
    admission: Admission,
    report: Report,
    *,
    bulk: bool,
) -> None:
    """Commit what the providers answered, then tell Redis (see the module docstring)."""
    rows_by_id = {row.id: row for row in sending}
    outcome_plan = plan(
        rt,
        rows_by_id,
        answers.results,
        _clock_or_host(rt.redis_now),
        admission.probes,
        answers.unsent,
    )
    applied = _write_outcomes(rt, outcome_plan.changes, outcome_plan.sent_refs, bulk=bulk)
    # committed: from here on nothing may cost the answer, only a refinement of it
    _quietly(
        "after-call effects",
        lambda: _apply_effects(rt, outcome_plan.effects, admission.attempts),
    )
    _quietly(
        "deferrals and hops",
        lambda: _after_write(rt, outcome_plan.waits, outcome_plan.hops, applied, rows_by_id),
    )
    report.sent += sum(1 for a in applied if a.to is Status.SENT)
    report.failed += sum(1 for a in applied if a.to in (Status.FAILED, Status.UNKNOWN))
    report.deferred += sum(1 for a in applied if a.to is Status.DEFERRED)
    retrying = {a.id for a in applied if a.to is Status.RETRYING}
    report.retry_ids = [i for i in outcome_plan.retry_ids if i in retrying]
    report.countdown = outcome_plan.countdown
    for notification_id in report.retry_ids:
        RETRIES.labels(rows_by_id[notification_id].provider).inc()


def _triage(
    rt: Runtime,
    rows: Sequence[NotificationRow],
    now: float,
    report: Report,
    states: dict[int, CampaignState],
) -> tuple[list[NotificationRow], list[NotificationRow], list[NotificationRow], list[Change]]:
    """Sort a batch: ready to admit, stuck in ``sending``, woken early, and rows of a
    campaign that is not running (paused: back to its pool; cancelled: cancelled).

    ``now`` is Redis's clock, as every ``sending`` stamp is: one clock for all hosts."""
    ready: list[NotificationRow] = []
    stuck: list[NotificationRow] = []
    early: list[NotificationRow] = []
    held: list[Change] = []
    sending_deadline = now - rt.settings.sending_timeout
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


def _still_running(
    rows: Sequence[NotificationRow], states: Mapping[int, CampaignState], report: Report
) -> tuple[list[NotificationRow], list[Change]]:
    """``rows`` split by their campaign's state as read again: still to send, and the
    changes that hold the rest (as :func:`_triage` holds them)."""
    going: list[NotificationRow] = []
    held: list[Change] = []
    for row in rows:
        if row.campaign_id is not None and states[row.campaign_id].status != RUNNING:
            held.append(_hold(row, states[row.campaign_id].status))
            report.skipped += 1
        else:
            going.append(row)
    return going, held


def _hold(row: NotificationRow, campaign_status: str) -> Change:
    if campaign_status == CANCELLED:
        return Change(
            row.id,
            Status.CANCELLED,
            expect=Expect.row(row),
            reason="campaign:cancelled",
            values={"next_attempt_at": None},
        )
    # paused (or not started): back to the campaign's pool, released again on resume
    return Change(
        row.id,
        Status.QUEUED,
        expect=Expect.row(row),
        reason=f"campaign:{campaign_status}",
        values={"published_at": None},
    )


def _write(
    rt: Runtime,
    changes: list[Change],
    now: float,
    *,
    bulk: bool,
    sent_refs: Sequence[tuple[str, str]] = (),
) -> list[Applied]:
    if not changes:
        return []
    # shared with the tasks of the same lane writing at this moment in this process
    # (tasks/writes.py): still this call's own compare-and-set, and exactly what it
    # applied comes back
    return writes.write(rt, changes, now, sent_refs, bulk=bulk)


def _write_outcomes(
    rt: Runtime, changes: list[Change], sent_refs: Sequence[tuple[str, str]], *, bulk: bool
) -> list[Applied]:
    """Commit what the providers answered, retrying while the database refuses.

    The answers exist only in this task's memory: a locked SQLite or a PostgreSQL
    fail-over must not turn them into a lost outcome (the row would end ``unknown``).
    Each try is the same compare-and-set, so a try whose commit did land before its
    connection broke makes the next one a no-op, never a second change."""
    now = rt.redis_now
    for attempt in Retrying(
        retry=retry_if_exception_type(DBAPIError),
        stop=stop_after_delay(OUTCOME_WRITE_PATIENCE),
        wait=wait_exponential(multiplier=0.05, max=5.0),
        reraise=True,
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                log.warning(
                    "recording %d answered call(s): try %d after a database error",
                    len(changes),
                    attempt.retry_state.attempt_number,
                )
            return _write(rt, changes, _clock_or_host(now), bulk=bulk, sent_refs=sent_refs)
    raise AssertionError("unreachable: Retrying re-raises")  # pragma: no cover


def _clock_or_host(now: Callable[[], float]) -> float:
    """Redis's clock for the stamp; should Redis be away, the host's (an outcome must not
    wait for Redis, and its stamp only orders the event)."""
    try:
        return now()
    except RedisError:
        return time.time()


def _apply_effects(rt: Runtime, effects: Effects, attempts: Attempts) -> None:
    for provider, outcome in effects.outcomes:
        PROVIDER_CALLS.labels(provider, outcome).inc()
    if effects.bad_numbers:  # numbers a provider called bad: suppressed (tasks/suppressions.py)
        suppressions.learn(rt, effects.bad_numbers)
    for provider, number, seconds in effects.blocks:
        rt.caps.block(provider, number, seconds)
    # Redis's clock only for a circuit to open: not a command on every dispatch
    now = rt.redis_now() if effects.opens else 0.0
    for provider, why in effects.opens.items():
        rt.circuit.open(provider, why, now)
    for provider in effects.closes:
        rt.circuit.close(provider)
    attempts.give_back(effects.unsent)


def _quietly(what: str, step: Callable[[], None]) -> None:
    """Run a step that follows a committed outcome: its failure is logged, not raised
    (raising would fail the task, and the answered call would look lost)."""
    try:
        step()
    except (RedisError, OSError) as exc:
        log.warning("%s after a committed outcome failed (%s): the sweeper repairs it", what, exc)


def _after_write(
    rt: Runtime,
    waits: Sequence[Wait],
    hops: Sequence[Hop],
    applied: Sequence[Applied],
    rows: Mapping[int, NotificationRow],
) -> None:
    """Once committed: waits go to the deferred set, hops to the queue, counters tick
    (labelled by the provider of the row as it was read)."""
    done = {(a.id, a.to) for a in applied}
    for a in applied:  # a receipt applied with them may name a row of another batch
        provider = rows[a.id].provider if a.id in rows else "other"
        TRANSITIONS.labels(provider, a.to.value).inc()
    deferred = [(w.id, w.until) for w in waits if (w.id, Status.DEFERRED) in done]
    for w in waits:
        if (w.id, Status.DEFERRED) in done:
            DEFERRALS.labels(rows[w.id].provider, w.reason.split(":")[0]).inc()
    if deferred:
        rt.deferred.add(deferred)
    hopped = [(h.id, rows[h.id].priority) for h in hops if (h.id, Status.QUEUED) in done]
    if hopped:
        publish_by_priority(rt.celery, hopped, batch=rt.settings.dispatch_batch)


def resolve_stuck_sending(
    rt: Runtime, rows: Sequence[NotificationRow], *, now: float
) -> list[Applied]:
    """Rows left ``sending`` by a lost worker: the call may or may not have gone out.

    Each change expects the very ``sending`` episode that was found stuck (its version),
    so a row that finished, or was retried and is sending again, is left alone."""
    resend = rt.settings.on_ambiguous == "resend"
    changes = [
        Change(
            id=row.id,
            to=Status.RETRYING if resend else Status.UNKNOWN,
            expect=Expect.row(row),
            reason="worker lost mid-call; resending (operator's choice)"
            if resend
            else "worker lost mid-call; the call may have been placed",
            values={"next_attempt_at": now if resend else None},
        )
        for row in rows
    ]
    applied = rt.notifications.transition(changes, now=now)
    for a in applied:
        log.warning("notification %s was left sending by a lost worker: now %s", a.id, a.to)
    if resend and applied:
        classes = {row.id: row.priority for row in rows}
        publish_by_priority(
            rt.celery, [(a.id, classes[a.id]) for a in applied], batch=rt.settings.dispatch_batch
        )
    return applied


def describe(row: NotificationRow) -> str:
    """For log lines: the id, the provider and the masked number — never the number."""
    return f"#{row.id} {row.provider} {mask(row.to)}"
