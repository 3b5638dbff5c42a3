"""Counting the threads bulk work holds in this worker (worker/queues.py's
:data:`~worker.queues.BULK_THREADS`), so the bulk queue is left out of the worker's
BRPOP while bulk holds its share of them (``NOTIFYQ_BULK_SHARE``).

A bulk task (its message came from the bulk queue) counts from the moment its message
is received — in the consumer's thread, before the consumer asks Redis for the next
message, so the next BRPOP already knows — until it has run (returned, raised or asked
to be retried) or was revoked. A message held for a later moment (an ETA: a retry's
countdown) holds no thread while it waits: it counts only once it starts. The limit is
set once the worker is ready, from the pool's real size (``--concurrency`` included).
Loaded with the tasks (worker/app.py ``WORKER_MODULES``).
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_postrun, task_prerun, task_received, task_revoked, worker_ready

from config.settings import get_settings
from worker.queues import BULK_QUEUE, BULK_THREADS


@worker_ready.connect
def _limit(sender: Any = None, **_: object) -> None:
    settings = get_settings()
    threads = getattr(getattr(sender, "controller", None), "concurrency", None)
    BULK_THREADS.configure(int(threads or settings.worker_concurrency), settings.bulk_share)


def from_bulk(delivery_info: Any) -> bool:
    return bool(delivery_info) and delivery_info.get("routing_key") == BULK_QUEUE


@task_received.connect
def _received(request: Any = None, **_: object) -> None:
    if request is not None and not request.eta and from_bulk(request.delivery_info):
        BULK_THREADS.enter(request.id)


@task_prerun.connect
def _started(task_id: str = "", task: Any = None, **_: object) -> None:
    if task is not None and from_bulk(getattr(task.request, "delivery_info", None)):
        BULK_THREADS.enter(task_id)  # an ETA message, or one received before the limit


@task_postrun.connect
def _finished(task_id: str = "", **_: object) -> None:
    BULK_THREADS.leave(task_id)


@task_revoked.connect
def _revoked(request: Any = None, **_: object) -> None:
    if request is not None:
        BULK_THREADS.leave(request.id)
