"""The ceiling for bench/dispatch.py: a Celery app configured exactly like notifyq's
(same broker settings, acks_late, prefetch 1, events on) whose only task sleeps as
long as a provider call takes. Run as ``celery -A bench.ceiling worker``."""

from __future__ import annotations

import time

from redis import Redis

from config.settings import get_settings
from worker.app import make_celery

settings = get_settings()
celery = make_celery(settings)
celery.conf.imports = []
_counter = Redis.from_url(settings.redis_url)


@celery.task(name="bench.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)
    with _counter.pipeline(transaction=False) as pipe:
        pipe.incr("bench:done")
        pipe.set("bench:last", time.time())
        pipe.execute()
