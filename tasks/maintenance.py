"""The clockwork on beat: release what is due, sweep what is stuck.

- ``notifyq.release_due`` (every ``NOTIFYQ_PUMP_INTERVAL``, 1 s): the deferred set's
  due members go to the workers in dispatch batches.
- ``notifyq.expire_verifications`` (every 30 s): verification codes past their time
  expire, and the notifications that carry them end.
- ``notifyq.sweep`` (every ``NOTIFYQ_SWEEP_INTERVAL``): rows ``sending`` past the
  sending timeout lost their worker (→ ``unknown``, or resent if the operator chose);
  waiting rows whose time and last hand-off are both older than the grace were lost
  on the way (a broker message gone, the deferred set flushed) and are handed out
  again — dispatch is idempotent, so a false alarm costs one no-op task; receipts
  that arrived before their notification was recorded are applied; ``sent`` rows
  whose receipt never came within ``NOTIFYQ_RECEIPT_TIMEOUT`` end ``unknown`` with a
  reason that says so (a receipt that still comes repairs them); and the per-number
  caps' buckets of one slice, each provider's, lose the fields no cap can use any more
  (:func:`sweep_caps`).

Every "too old" is measured on Redis's clock (``rt.redis_now()``), the clock every
``sending`` stamp is written on, so hosts whose clocks disagree agree on what is stuck.

One sweeper at a time (a Redis lock), though two would only duplicate no-op work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from scheduler.deferred import pump
from scheduler.limits import parse_caps
from store import Applied, Change, Expect, Status
from tasks.alone import alone
from tasks.dispatch import resolve_stuck_sending
from tasks.publish import publish_by_priority
from tasks.runtime import Runtime, get_runtime
from tasks.verifications import CAP_NAMESPACE, expire_due
from worker.app import celery

log = logging.getLogger(__name__)

PUMP_BATCH = 500
PUMP_MOST = 20_000


# beat's, four or five a second: kept out of Flower's history (worker/beat.py)
@celery.task(name="notifyq.release_due", send_events=False)
def release_due() -> int:
    return release(get_runtime())


def release(rt: Runtime) -> int:
    def hand_over(ids: Sequence[int]) -> None:
        rt.notifications.mark_published(ids)
        publish_redriven(rt, ids)

    return pump(rt.deferred, hand_over, batch=PUMP_BATCH, most=PUMP_MOST)


def publish_redriven(rt: Runtime, ids: Sequence[int]) -> None:
    """Ids known only by number (the deferred set, the sweeper's query): each goes back
    on its priority class's queue."""
    publish_by_priority(
        rt.celery, rt.notifications.priorities(ids), batch=rt.settings.dispatch_batch
    )


# beat's, four or five a second: kept out of Flower's history (worker/beat.py)
@celery.task(name="notifyq.expire_verifications", send_events=False)
def expire_verifications() -> int:
    """Codes nobody checked end when their time is up (their notifications with them,
    the code erased): a pending verification must not wait for someone to look."""
    return expire_due(get_runtime())


# beat's, four or five a second: kept out of Flower's history (worker/beat.py)
@celery.task(name="notifyq.sweep", send_events=False)
def sweep() -> dict[str, int]:
    rt = get_runtime()
    ttl = max(30, rt.settings.sweep_interval * 3)
    return alone(rt, "nq:lock:sweep", ttl, lambda: sweep_once(rt))


def sweep_once(rt: Runtime, *, now: float | None = None) -> dict[str, int]:
    now = rt.redis_now() if now is None else now
    settings = rt.settings
    stuck = rt.notifications.stale_sending(before=now - settings.sending_timeout, limit=1000)
    resolved = resolve_stuck_sending(rt, stuck, now=now) if stuck else []
    expired = end_unreceipted(rt, now=now)
    lost = rt.notifications.stale_waiting(before=now - settings.sweep_grace, limit=5000)
    if lost:
        log.warning("sweeper: re-driving %d notification(s) whose hand-off was lost", len(lost))
        rt.notifications.mark_published(lost, now=now)
        publish_redriven(rt, lost)
    with rt.db.write() as conn:
        matched = rt.receipts.apply(conn, None, now)
    return {
        "unknown": len(resolved),
        "redriven": len(lost),
        "receipts": len(matched),
        "receipt_timeouts": len(expired),
        "caps_swept": sweep_caps(rt, now=now),  # last: a caps Redis away stops nothing else
    }


def sweep_caps(rt: Runtime, *, now: float) -> int:
    """The caps' buckets have no TTL (scheduler/caps.py says why): each sweep drops the
    stale fields of one slice of every namespace's buckets, the slice chosen by the
    time, so every bucket is swept once in ``BUCKETS / SWEEP_SLICE`` sweeps (~11 min at
    10 s) and a second sweeper in the same turn only repeats a no-op. Returns how many
    fields went."""
    turn = int(now // rt.settings.sweep_interval)
    namespaces = {name: policy.caps for name, policy in rt.policies.items()}
    namespaces[CAP_NAMESPACE] = parse_caps(rt.settings.verify_caps)
    return sum(rt.caps.sweep(name, caps, turn) for name, caps in namespaces.items() if caps)


def end_unreceipted(rt: Runtime, *, now: float, limit: int = 5000) -> list[Applied]:
    """``sent`` rows older than the receipt timeout → ``unknown``, reason saying why."""
    timeout = rt.settings.receipt_timeout
    rows = rt.notifications.unreceipted(now=now, limit=limit)
    if not rows:
        return []
    hours = f"{timeout / 3600:g}h"
    changes = [
        Change(
            id=row.id,
            to=Status.UNKNOWN,
            expect=Expect.row(row),
            reason=f"receipt-timeout: no receipt within {hours}",
            values={"next_attempt_at": None},
        )
        for row in rows
    ]
    applied = rt.notifications.transition(changes, now=now)
    if applied:
        log.info("sweeper: %d sent notification(s) had no receipt within %s", len(applied), hours)
    return applied
