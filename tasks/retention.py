"""``notifyq.prune`` on beat, and ``notifyq db prune``: what is older than
``NOTIFYQ_RETENTION_DAYS`` leaves the store (store/retention.py says what and why).

One run at a time (a Redis lock; two would only contend for the same rows), each
bounded (store/retention.py ``Retention.most``): a backlog, such as the first run on an
old database, goes over several runs instead of one long one. "Older" is measured on
Redis's clock, the clock the rows were written on.
"""

from __future__ import annotations

import logging

from store.db import Database
from store.retention import Pruned, Retention
from tasks.alone import alone
from tasks.runtime import get_runtime
from worker.app import celery
from worker.beat import PRUNE_INTERVAL

log = logging.getLogger(__name__)


@celery.task(name="notifyq.prune", send_events=False)
def prune_task() -> dict[str, object]:
    rt = get_runtime()
    return alone(
        rt,
        "nq:lock:prune",
        PRUNE_INTERVAL * 2,
        lambda: prune(rt.db, rt.redis_now(), rt.settings.retention_days).as_dict(),
    )


def prune(db: Database, now: float, days: float, *, dry_run: bool = False) -> Pruned:
    """What ended ``days`` before ``now`` leaves the store (``dry_run``: only counted)."""
    retention = Retention(db)
    if dry_run:
        return retention.count(now, days)
    pruned = retention.prune(now, days)
    if pruned.notifications or pruned.partitions:
        log.info(
            "retention: deleted %d notification(s) older than %g days, %d event(s), "
            "%d partition(s)",
            pruned.notifications,
            days,
            pruned.events + pruned.partition_events,
            len(pruned.partitions),
        )
    return pruned
