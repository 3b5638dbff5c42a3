"""The beat schedule: what runs by the clock, and how often (settings decide).

Every entry expires after about one period, so a backlog behind a busy queue never
piles up stale ticks; the tasks run on the control queue, taken before the dispatch
queues, so a deep backlog of sends does not delay the pump that releases deferred ones.

They send no task events, neither beat when it publishes them (:func:`_quiet`) nor the
worker that runs them (``send_events=False`` on each): four or five a second, they
would fill Flower's task history and push the dispatch tasks and their retries out of
it. Their work shows in the metrics and the healthchecks instead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.signals import beat_init

from config.settings import Settings
from worker.queues import CONTROL_QUEUE

#: the scheduler every beat runs: the schedule in memory, each period claimed in Redis, so
#: any number of beats send each job once a period (worker/beat_scheduler.py)
SCHEDULER = "worker.beat_scheduler:ClaimingScheduler"
#: how often codes past their time are expired (a code's life is minutes: 30 s is fine)
VERIFICATION_EXPIRY_INTERVAL = 30.0
#: how often what is older than the retention is deleted (tasks/retention.py)
PRUNE_INTERVAL = 300.0


def schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    def every(seconds: float, task: str) -> dict[str, Any]:
        return {
            "task": task,
            "schedule": timedelta(seconds=seconds),
            "options": {"expires": max(1.0, seconds * 2), "queue": CONTROL_QUEUE},
        }

    return {
        "release-due": every(settings.pump_interval, "notifyq.release_due"),
        "sweep": every(settings.sweep_interval, "notifyq.sweep"),
        "poll-reports": every(settings.apispace_report_interval, "notifyq.poll_reports"),
        "campaigns": every(settings.pump_interval, "notifyq.campaigns"),
        "expire-verifications": every(VERIFICATION_EXPIRY_INTERVAL, "notifyq.expire_verifications"),
        "prune": every(PRUNE_INTERVAL, "notifyq.prune"),
        "webhooks-due": every(settings.pump_interval, "notifyq.webhooks_due"),
    }


@beat_init.connect
def _quiet(sender: Any = None, **_: object) -> None:
    """Beat publishes only control tasks: none of them announces itself to Flower."""
    if sender is not None:
        sender.app.conf.task_send_sent_event = False
