"""Beat's scheduler (``beat_scheduler`` in worker/app.py): any number of beats, in one
folder or on many hosts, and each periodic job sent once a period.

Celery's default keeps each entry's last run in a shelve file beside the process. Two
beats in one folder share that file and race on it (with ``dbm.dumb`` one dies with
``FileNotFoundError``); two on different hosts each send every job. Here nothing of the
schedule lives in a file:

- the schedule is the settings' (worker/beat.py), held in memory (Celery's plain
  ``Scheduler``): a restarted beat has nothing to read back;
- before sending an entry, the beat claims its period in Redis
  (scheduler/periods.py): of beats falling due together, one sends; the others skip to
  their next turn. A beat that dies leaves the others sending;
- each turn touches :data:`HEARTBEAT` (``notifyq healthcheck beat`` reads its age): a
  sign of life, not schedule state, so several beats touching it share nothing that can
  break;
- the store is asked every :data:`STORE_PROBE_EVERY` seconds, so that beat too logs one
  WARNING when it goes and one INFO when it is back (observe/outage.py); Redis the
  same, when a claim cannot be made (nothing is sent then: the broker is that Redis).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from celery.beat import ScheduleEntry, Scheduler

from config.settings import Settings, get_settings
from observe.outage import Outage
from scheduler.availability import redis_away
from scheduler.connect import redis_client
from scheduler.periods import PeriodClaims
from store.availability import probe_store
from store.db import Database

log = logging.getLogger(__name__)

#: touched each turn of the beat (relative to where it runs, as ``var/`` always is)
HEARTBEAT = Path("var") / "beat-alive"
#: seconds between the beat's looks at the store
STORE_PROBE_EVERY = 5.0
#: the period a job without a fixed interval (a crontab) is claimed for
UNTIMED_PERIOD = 30.0


class ClaimingScheduler(Scheduler):
    """Celery's in-memory scheduler, sending an entry only once it holds the period."""

    def __init__(self, *args: Any, settings: Settings | None = None, **kwargs: Any) -> None:
        kwargs.pop("schedule_filename", None)  # nothing of ours lives in a file
        settings = settings or get_settings()
        self._redis = redis_client(
            settings.redis_client_url, socket_timeout=5, socket_connect_timeout=5
        )
        self._claims = PeriodClaims(self._redis)
        self._db = Database(settings.database_url, pool_size=1, max_overflow=0)
        self._store = Outage("the store", lambda: probe_store(self._db), logger=log)
        self._broker = Outage("Redis", self._redis.ping, logger=log)
        self._looked = float("-inf")
        self._beat = float("-inf")
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._alive()
        return float(super().tick(*args, **kwargs))

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        try:
            mine = self._claims.claim(entry.name, period_of(entry))
        except Exception as error:
            if not redis_away(error):
                raise
            self._broker.failed(error)
            return
        if mine:
            super().apply_entry(entry, producer=producer)

    def _alive(self) -> None:
        now = time.monotonic()
        if now - self._beat >= 1.0:
            self._beat = now
            with contextlib.suppress(OSError):  # a sign of life; never what stops the beat
                HEARTBEAT.parent.mkdir(parents=True, exist_ok=True)
                HEARTBEAT.touch()
        if now - self._looked >= STORE_PROBE_EVERY and not self._store.down:
            self._looked = now
            try:
                probe_store(self._db)
            except Exception as error:  # any failure to answer is the store away here
                self._store.failed(error)

    def close(self) -> None:
        super().close()
        self._store.close()
        self._broker.close()
        self._db.dispose()
        self._redis.close()

    @property
    def info(self) -> str:
        return "in memory; each period claimed in Redis"


def period_of(entry: ScheduleEntry) -> float:
    """An entry's period in seconds (``timedelta`` schedules), else :data:`UNTIMED_PERIOD`."""
    seconds = getattr(entry.schedule, "seconds", None)
    return float(seconds) if seconds else UNTIMED_PERIOD
