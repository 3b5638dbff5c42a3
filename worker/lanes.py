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

A free thread is only half of a code's room: it also needs the GIL, often. A code's task
waits on the store and on Redis many times before its call leaves (the read, the claim,
the caps, the ``sending`` write, each one or more round trips), and after each wait it
must take the GIL back from whichever thread holds it. During a campaign that
is mostly the provider calls' event loop (two thirds of the worker's GIL time, measured
with ``py-spy record --gil``), which never waits on its own: CPython takes the GIL from
it only after the switch interval, 5 ms by default, so every wait of the code costs up
to 5 ms more. The worker sets :data:`SWITCH_INTERVAL` instead, so the code's thread
(and the consumer's, which hands it the message) has the GIL back within half a
millisecond; the loop hands the GIL over more often, which cost the campaign no
measurable rate (``bench/latency.py``).
"""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import task_postrun, task_prerun, task_received, task_revoked, worker_ready

from config.settings import get_settings
from worker.queues import BULK_QUEUE, BULK_THREADS

#: seconds a thread holds the GIL while another waits for it (CPython's default: 0.005)
SWITCH_INTERVAL = 0.0005


@worker_ready.connect
def _prompt_turns(**_: object) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)


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
