"""Webhook delivery on the workers: a pump hands due events to a queue of their own,
and a task sends each one.

- ``notifyq.webhooks_due`` (beat, every ``NOTIFYQ_PUMP_INTERVAL``, on the control
  queue): claims the outbox's due deliveries — each pushed a lease ahead, so the next
  pump leaves it alone — and publishes one ``notifyq.deliver_webhook`` each.
- ``notifyq.deliver_webhook`` (queue ``notifyq.webhooks``, so a slow receiver holds up
  only other webhooks, never a send): reads the delivery, attempts it
  (tasks/webhook_http.py), and records the outcome and the next wait
  (store/outbox.py).

Nothing is lost between them: a message lost with its broker, or a task that died with
its worker (SIGKILL mid-POST), leaves its delivery pending, and once the lease is over
the pump hands it out again, under the same ``webhook-id``. A duplicate message finds
the delivery already recorded (its compare-and-set) or sends the same event again,
which the receiver recognises by its id: at least once, never another id.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

from observe.metrics import WEBHOOK_ATTEMPTS
from store.outbox import AttemptResult, DeliveryStatus, DeliveryStore
from tasks.runtime import Runtime, get_runtime
from tasks.webhook_http import attempt, webhook_client
from worker.app import celery
from worker.queues import WEBHOOK_QUEUE

log = logging.getLogger(__name__)

DELIVER = "notifyq.deliver_webhook"
#: deliveries claimed a claim; claims a pump tick, at the most
CLAIM_BATCH = 500
CLAIMS_MOST = 40

_clients: dict[bool, httpx.Client] = {}
_clients_lock = threading.Lock()


def client_for(runtime: Runtime) -> httpx.Client:
    """This process's webhook client (its connection pool shared by every task)."""
    allow = runtime.settings.webhook_allow_private
    with _clients_lock:
        if allow not in _clients:
            _clients[allow] = webhook_client(allow_private=allow)
        return _clients[allow]


@celery.task(name="notifyq.webhooks_due")
def webhooks_due() -> int:
    return hand_out_due(get_runtime())


def hand_out_due(rt: Runtime, *, now: float | None = None) -> int:
    """Publish a delivery task for each due delivery; returns how many."""
    deliveries = DeliveryStore(rt.db)
    handed = 0
    for _ in range(CLAIMS_MOST):
        moment = time.time() if now is None else now
        lease = rt.settings.webhook_lease
        claimed = deliveries.claim_due(now=moment, lease=lease, limit=CLAIM_BATCH)
        if claimed:
            with rt.celery.producer_or_acquire() as producer:
                for delivery_id in claimed:
                    rt.celery.send_task(
                        DELIVER, args=[delivery_id], queue=WEBHOOK_QUEUE, producer=producer
                    )
        handed += len(claimed)
        if len(claimed) < CLAIM_BATCH:
            break
    return handed


@celery.task(name=DELIVER)
def deliver_webhook(delivery_id: int) -> str:
    return deliver(get_runtime(), delivery_id)


def deliver(rt: Runtime, delivery_id: int, *, client: httpx.Client | None = None) -> str:
    """Attempt one delivery and record what came of it; returns its status after (or
    ``gone`` when it was no longer pending, ``stale`` when another copy recorded first)."""
    store = DeliveryStore(rt.db)
    delivery = store.pending(delivery_id, now=time.time())
    if delivery is None:
        return "gone"
    result = attempt(client or client_for(rt), delivery)
    WEBHOOK_ATTEMPTS.labels(outcome_of(result)).inc()
    status = store.record(
        delivery,
        result,
        now=time.time(),
        waits=rt.settings.webhook_retry_waits,
        disable_after=rt.settings.webhook_disable_after,
    )
    if status is DeliveryStatus.FAILED:
        log.warning(
            "webhook delivery %s to endpoint %s failed after %d attempts",
            delivery.id,
            delivery.endpoint_id,
            delivery.attempts + 1,
        )
    return status.value if status is not None else "stale"


def outcome_of(result: AttemptResult) -> str:
    """The ``outcome`` label of an attempt: success, http_4xx, http_5xx, http_other,
    timeout, refused (an address we may not reach) or network."""
    if result.ok:
        return "success"
    if result.status_code is not None:
        return {4: "http_4xx", 5: "http_5xx"}.get(result.status_code // 100, "http_other")
    for kind in ("timeout", "refused"):
        if result.answer.startswith(kind):
            return kind
    return "network"
