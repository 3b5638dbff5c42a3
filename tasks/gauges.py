"""What the metrics endpoints read at scrape time: gauges over the shared state (Redis
and the ledger) and counters followed from the ledger's events.

They sit above the runtime (they read its Redis and its database), so the API's
``/metrics`` and every worker's endpoint serve the same figures. The counters a process
increments as it works are in observe/metrics.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from observe.metrics import (
    PROVIDER_CALLS,
    RETRIES,
    STALE_CHANGES,
    WEBHOOK_ATTEMPTS,
    WEBHOOK_OUTCOMES,
)
from providers import registry
from providers.base import Outcome
from store.schema import Event, Notification
from store.status import Status
from tasks.runtime import Runtime
from worker.queues import QUEUES

log = logging.getLogger(__name__)


#: the statuses of a notification still on its way, and what "oldest waiting" measures
WAITING_STATUSES = ("queued", "deferred", "retrying")
#: latency buckets from enqueue to sent (a window or a daily cap can hold a send for hours)
#: and from sent to its receipt (a call rings, is answered, is reported: seconds to hours)
LATENCY_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class RedisStateCollector:
    """Gauges read from Redis at scrape time, served by every worker and by the API: the
    state all processes share (circuits, the not-before set, the broker's queues), so
    any one target shows it. Each scrape costs a handful of Redis round trips."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:

        circuit = GaugeMetricFamily(
            "notifyq_circuit_open", "1 while a provider's circuit is open", labels=["provider"]
        )
        for name in self.runtime.providers:
            circuit.add_metric([name], 1.0 if self.runtime.circuit.is_open(name) else 0.0)
        yield circuit
        waiting = GaugeMetricFamily(
            "notifyq_deferred_waiting", "Notifications in the not-before set"
        )
        waiting.add_metric([], float(len(self.runtime.deferred)))
        yield waiting
        depth = GaugeMetricFamily(
            "notifyq_queue_depth", "Messages waiting in a broker queue", labels=["queue"]
        )
        for queue in QUEUES:
            depth.add_metric([queue], float(self.runtime.redis.llen(queue)))
        yield depth


class LedgerCollector:
    """Gauges read at scrape time from the source of truth (the ledger), so the API's
    /metrics is right however many workers run and whichever of them restarted: every
    notification by provider and status, what waits and why, and how long the oldest
    waiting one has waited."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:

        table = Notification.__table__
        by_status = GaugeMetricFamily(
            "notifyq_notifications",
            "Notifications in the ledger by provider and status",
            labels=["provider", "status"],
        )
        by_reason = GaugeMetricFamily(
            "notifyq_waiting",
            "Notifications deferred or retrying, by provider, status and reason "
            "(cap:ihuyi:3/minute, window:jumdata, scheduled, …)",
            labels=["provider", "status", "reason"],
        )
        oldest = GaugeMetricFamily(
            "notifyq_oldest_waiting_seconds",
            "Age of the oldest notification still queued, deferred or retrying",
            labels=["provider"],
        )

        waiting = [table.c.status.in_([Status(s) for s in WAITING_STATUSES])]
        with self.runtime.db.read() as conn:
            for provider, status, count in conn.execute(
                select(table.c.provider, table.c.status, func.count()).group_by(
                    table.c.provider, table.c.status
                )
            ):
                by_status.add_metric([provider, getattr(status, "value", str(status))], count)
            for provider, status, reason, count in conn.execute(
                select(table.c.provider, table.c.status, table.c.reason, func.count())
                .where(table.c.status.in_([Status.DEFERRED, Status.RETRYING]))
                .group_by(table.c.provider, table.c.status, table.c.reason)
            ):
                status_text = getattr(status, "value", str(status))
                by_reason.add_metric([provider, status_text, reason or ""], count)
            now = time.time()
            ages = dict.fromkeys(self.runtime.providers, 0.0)  # 0: nothing waits
            for provider, first in conn.execute(
                select(table.c.provider, func.min(table.c.created_at))
                .where(*waiting)
                .group_by(table.c.provider)
            ):
                ages[provider] = max(0.0, now - float(first))
        for provider, age in ages.items():
            oldest.add_metric([provider], age)
        yield by_status
        yield by_reason
        yield oldest


class LedgerFollower:
    """Counters and latency histograms from the ledger's events, followed as they are
    written: status changes by provider, enqueue→sent, and sent→receipt (callbacks and
    report pulls alike). The API serves them; each scrape reads the events written since
    the last one (by primary key, at most ``batch`` of them: the rest next time), so it
    starts from the moment the process started, as any counter does. Every API process
    counts every event: aggregate them with ``max``, not ``sum``."""

    def __init__(self, runtime: Runtime, batch: int = 20_000) -> None:
        self.runtime = runtime
        self.batch = batch
        #: the last event counted: from the process's start, as any counter
        self.mark: int | None = None
        try:
            self.mark = self._last_event()
        except Exception:  # the database is away at start-up: the first scrape marks
            self.mark = None
        self.transitions = Counter(
            "notifyq_ledger_transitions",
            "Status changes recorded in the ledger, by provider and new status",
            ["provider", "status"],
            registry=None,
        )
        self.to_sent = Histogram(
            "notifyq_enqueue_to_sent_seconds",
            "From enqueue to the provider's acceptance (sent), by provider",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self.to_receipt = Histogram(
            "notifyq_sent_to_receipt_seconds",
            "From sent to the receipt's final status, by provider and outcome",
            ["provider", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )

    def _last_event(self) -> int:

        with self.runtime.db.read() as conn:
            return conn.execute(select(func.max(Event.__table__.c.id))).scalar_one() or 0

    def follow(self) -> int:
        """Read the events written since the last call; returns how many."""

        events, rows = Event.__table__, Notification.__table__
        sent_event = events.alias("sent_event")
        sent_at = (
            select(func.max(sent_event.c.at))
            .where(
                sent_event.c.notification_id == events.c.notification_id,
                sent_event.c.to_status == Status.SENT,
            )
            .scalar_subquery()
        )
        if self.mark is None:
            self.mark = self._last_event()
            return 0
        with self.runtime.db.read() as conn:
            found = list(
                conn.execute(
                    select(
                        events.c.id,
                        events.c.to_status,
                        events.c.at,
                        rows.c.provider,
                        rows.c.created_at,
                        sent_at.label("sent_at"),
                    )
                    .join(rows, rows.c.id == events.c.notification_id)
                    .where(events.c.id > self.mark)
                    .order_by(events.c.id)
                    .limit(self.batch)
                )
            )
        for event in found:
            status = getattr(event.to_status, "value", str(event.to_status))
            self.transitions.labels(event.provider, status).inc()
            if status == "sent":
                self.to_sent.labels(event.provider).observe(max(0.0, event.at - event.created_at))
            elif status in ("delivered", "undelivered") and event.sent_at is not None:
                self.to_receipt.labels(event.provider, status).observe(
                    max(0.0, event.at - event.sent_at)
                )
            self.mark = event.id
        return len(found)

    def collect(self) -> Iterator[Metric]:
        try:
            self.follow()
        except Exception as exc:  # a scrape must answer even while the database is away
            log.warning("ledger events not read: %s", type(exc).__name__)
        yield from self.transitions.collect()
        yield from self.to_sent.collect()
        yield from self.to_receipt.collect()


def prime() -> None:
    """Give every counter whose labels are known in advance its series at 0, so a
    dashboard's rate() starts from the process's start, not from the first event (and a
    series that never moves is a 0 on the graph, not a gap)."""

    for provider in registry.names():
        RETRIES.labels(provider)
        for outcome in Outcome:
            PROVIDER_CALLS.labels(provider, outcome.value)
    for status in Status:
        STALE_CHANGES.labels(status.value)
    for outcome in WEBHOOK_OUTCOMES:
        WEBHOOK_ATTEMPTS.labels(outcome)
