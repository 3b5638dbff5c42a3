"""The beat schedule: what runs by the clock, and how often (settings decide).

Every entry expires after about one period, so a backlog behind a busy queue never
piles up stale ticks; the tasks run on the control queue, beside the dispatch queue,
so a deep backlog of sends does not delay the pump that releases deferred ones.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from config.settings import Settings
from worker.queues import CONTROL_QUEUE

#: beat's schedule file (beat rewrites it as it sends tasks; the healthcheck reads its age)
BEAT_SCHEDULE = Path("var") / "celerybeat-schedule"
#: how often codes past their time are expired (a code's life is minutes: 30 s is fine)
VERIFICATION_EXPIRY_INTERVAL = 30.0


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
        "webhooks-due": every(settings.pump_interval, "notifyq.webhooks_due"),
    }
