"""Webhook delivery on the workers: a pump hands due events to a queue of their own,
and tasks send them, an endpoint's at a time.

- ``notifyq.webhooks_due`` (beat, every ``NOTIFYQ_PUMP_INTERVAL``, on the control
  queue): claims the outbox's due deliveries — each pushed a lease ahead, so the next
  pump leaves it alone — and publishes them in tasks of one endpoint's deliveries.
- ``notifyq.deliver_webhooks`` (queue ``notifyq.webhooks``, so a slow receiver holds up
  only other webhooks, never a send): up to 100 deliveries of one endpoint a task,
  attempted one after another (tasks/webhook_http.py), their outcomes and next waits
  recorded in one transaction (store/deliveries.py).

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
from collections import Counter, defaultdict
from collections.abc import Sequence

from observe.metrics import WEBHOOK_ATTEMPTS
from store.deliveries import AttemptResult, Delivery, DeliveryStatus, DeliveryStore
from tasks.runtime import Runtime, get_runtime
from tasks.webhook_http import WebhookClient, attempt, webhook_client
from worker.app import celery
from worker.queues import WEBHOOK_QUEUE

log = logging.getLogger(__name__)

DELIVER = "notifyq.deliver_webhooks"
#: deliveries claimed a claim; claims a pump tick, at the most
CLAIM_BATCH = 500
CLAIMS_MOST = 40
#: deliveries a task carries, all for one endpoint: sent one after another on one
#: connection and recorded in one transaction (a task per event cost dispatch a third
#: of its sends, bench/webhooks.py): a task's own cost (its message, the read of its
#: deliveries, the transaction of their outcomes) is shared by this many events, and a
#: slow receiver's batch is cut at a third of the lease (the rest due again at once)
DELIVERY_BATCH = 100

_clients: dict[bool, WebhookClient] = {}
_clients_lock = threading.Lock()


def client_for(runtime: Runtime) -> WebhookClient:
    """This process's webhook client (its connection pool shared by every task)."""
    allow = runtime.settings.webhook_allow_private
    with _clients_lock:
        if allow not in _clients:
            _clients[allow] = webhook_client(allow_private=allow)
        return _clients[allow]


@celery.task(name="notifyq.webhooks_due", send_events=False)
def webhooks_due() -> int:
    return hand_out_due(get_runtime())


def hand_out_due(rt: Runtime, *, now: float | None = None) -> int:
    """Publish delivery tasks for the due deliveries, an endpoint's to a task; returns
    how many deliveries."""
    deliveries = DeliveryStore(rt.db)
    handed = 0
    for _ in range(CLAIMS_MOST):
        moment = time.time() if now is None else now
        lease = rt.settings.webhook_lease
        claimed = deliveries.claim_due(now=moment, lease=lease, limit=CLAIM_BATCH)
        by_endpoint: dict[int, list[int]] = defaultdict(list)
        for delivery_id, endpoint_id in claimed:
            by_endpoint[endpoint_id].append(delivery_id)
        if claimed:
            with rt.celery.producer_or_acquire() as producer:
                for ids in by_endpoint.values():
                    for start in range(0, len(ids), DELIVERY_BATCH):
                        rt.celery.send_task(
                            DELIVER,
                            args=[ids[start : start + DELIVERY_BATCH]],
                            queue=WEBHOOK_QUEUE,
                            producer=producer,
                        )
        handed += len(claimed)
        if len(claimed) < CLAIM_BATCH:
            break
    return handed


@celery.task(name=DELIVER)
def deliver_webhooks(delivery_ids: list[int]) -> list[str]:
    return deliver(get_runtime(), delivery_ids)


def deliver(
    rt: Runtime, delivery_ids: Sequence[int], *, client: WebhookClient | None = None
) -> list[str]:
    """Attempt the deliveries still pending, one after another, and record what came of
    them; returns each one's status after (``stale`` where another copy recorded first).

    A batch stops early when its endpoint gives no answer (down, timing out, refused:
    the rest would only wait their 10 s each), and the rest are recorded as failed this
    turn, saying why; or when it has taken a third of its lease, and the rest are due
    again at once."""
    store = DeliveryStore(rt.db)
    client = client or client_for(rt)
    deliveries = store.pending(delivery_ids, now=time.time())
    started = time.monotonic()
    tried: list[tuple[Delivery, AttemptResult]] = []
    outcomes: Counter[str] = Counter()
    for delivery in deliveries:
        if time.monotonic() - started > rt.settings.webhook_lease / 3:
            break
        result = attempt(client, delivery)
        outcomes[outcome_of(result)] += 1
        tried.append((delivery, result))
        if result.status_code is None:
            # no answer at all: the rest count this turn as failed too, without waiting
            # 10 s each, so every event keeps to its own retries (failed after 24 h)
            unsent = f"not sent: delivery {delivery.id} just before got no answer"
            tried += [(rest, AttemptResult(None, unsent, 0.0)) for rest in deliveries[len(tried) :]]
            break
    for outcome, count in outcomes.items():  # a batch's attempts counted at once
        WEBHOOK_ATTEMPTS.labels(outcome).inc(count)
    statuses = store.record(
        tried,
        now=time.time(),
        waits=rt.settings.webhook_retry_waits,
        disable_after=rt.settings.webhook_disable_after,
        untried=deliveries[len(tried) :],
    )
    for (delivery, _), status in zip(tried, statuses, strict=True):
        if status is DeliveryStatus.FAILED:
            log.warning(
                "webhook delivery %s to endpoint %s failed after %d attempts",
                delivery.id,
                delivery.endpoint_id,
                delivery.attempts + 1,
            )
    return [status.value if status is not None else "stale" for status in statuses]


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
