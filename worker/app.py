"""The Celery app, ``worker.app:celery`` (so ``celery -A worker.app flower`` works).

JSON only; tasks carry notification ids, never numbers or texts. Acknowledged late and
rejected (requeued) when a worker dies, one message prefetched per thread: a message
is only gone once its notification's new state is committed. Task events are on so
Flower shows every task, its retries and its runtime.

The broker is ``NOTIFYQ_REDIS_URL``; behind Sentinel, in either spelling the settings
accept, it becomes kombu's ``sentinel://h1:26379/<db>;sentinel://h2:26379/<db>`` with the
transport option ``master_name`` (:func:`broker`).

This module imports nothing of ours but the settings and the schedule, so the tasks can
import the app without a circle. The app reads the environment when its configuration
is first used, never at import; what a worker does once it is ready (metrics, warm
pools) lives above the tasks, in worker/ready.py, which the app loads with its tasks.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging
from kombu import Queue

from config.settings import Settings, get_settings
from observe.logs import setup
from worker.beat import SCHEDULER, schedule
from worker.queues import (
    CONTROL_QUEUE,
    DISPATCH_QUEUE,
    PRIORITY_STEPS,
    QUEUE_ORDER_STRATEGY,
    QUEUES,
    WEBHOOK_QUEUE,
)

#: longer than any retry countdown (retry_max ≤ 900 s), or a Redis broker would hand an
#: ETA message to a second worker while the first still holds it
VISIBILITY_TIMEOUT = 1800
#: the modules a worker loads: the tasks, then what it does once ready
WORKER_MODULES = (
    "tasks.dispatch",
    "tasks.maintenance",
    "tasks.retention",
    "tasks.reports",
    "tasks.campaigns.release",
    "tasks.webhooks",
    "worker.ready",
    "worker.lanes",
)


def broker(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The broker URL and transport options: ``redis_url`` as it is, or for a Sentinel
    URL (either spelling, config/settings.py ``parse_sentinel``) kombu's own form —
    ``sentinel://h1:26379/<db>;sentinel://h2:26379/<db>`` — and ``master_name``."""
    options: dict[str, Any] = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # urgent before normal before bulk, whenever more than one waits (worker/queues.py)
        "queue_order_strategy": QUEUE_ORDER_STRATEGY,
        "priority_steps": PRIORITY_STEPS,
    }
    sentinel = settings.sentinel
    if sentinel is None:
        return settings.redis_url, options
    options["master_name"] = sentinel.service
    # the Sentinels answer without the master's password; their socket timeouts
    options["sentinel_kwargs"] = {"socket_timeout": 5, "socket_connect_timeout": 5}
    return sentinel.kombu_url(), options


def celery_config(settings: Settings) -> dict[str, Any]:
    broker_url, transport_options = broker(settings)
    return {
        "broker_url": broker_url,
        "broker_connection_retry_on_startup": True,
        # A Redis error reply (OOM, LOADING after a restart) reconnects like a lost
        # connection instead of stopping the worker.
        "broker_channel_error_retry": True,
        # A dispatch already talking to a provider when Redis goes finishes and records
        # its outcome; its unacked message comes back and finds the row already final.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_transport_options": transport_options,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": DISPATCH_QUEUE,
        "task_routes": {
            "notifyq.release_due": {"queue": CONTROL_QUEUE},
            "notifyq.sweep": {"queue": CONTROL_QUEUE},
            "notifyq.poll_reports": {"queue": CONTROL_QUEUE},
            "notifyq.campaigns": {"queue": CONTROL_QUEUE},
            "notifyq.webhooks_due": {"queue": CONTROL_QUEUE},
            "notifyq.deliver_webhooks": {"queue": WEBHOOK_QUEUE},
        },
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.worker_concurrency,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "imports": list(WORKER_MODULES),
        "beat_schedule": schedule(settings),
        "beat_scheduler": SCHEDULER,
        "timezone": settings.timezone,
    }


def make_celery(settings: Settings) -> Celery:
    """An app bound to these settings (an embedded runtime's producer, a benchmark)."""
    app = Celery("notifyq", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


#: the app of every notifyq process, configured from the environment on first use
celery = Celery("notifyq", set_as_current=False)
celery.add_defaults(lambda: celery_config(get_settings()))


@setup_logging.connect
def _logging(**_: object) -> None:
    """Our format and redaction filters instead of Celery's own logging set-up."""
    setup(get_settings().log_level, get_settings().task_log_level)
