"""Handing notification ids to the workers: dispatch messages carry ids, nothing else."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from worker.app import DISPATCH_QUEUE

DISPATCH = "notifyq.dispatch"


def publish_dispatch(app: Celery, ids: Sequence[int], *, batch: int) -> int:
    """Publish dispatch tasks for ``ids`` in batches; returns how many messages went out."""
    messages = 0
    with app.producer_or_acquire() as producer:
        for start in range(0, len(ids), batch):
            chunk = [int(i) for i in ids[start : start + batch]]
            app.send_task(DISPATCH, args=[chunk], queue=DISPATCH_QUEUE, producer=producer)
            messages += 1
    return messages
