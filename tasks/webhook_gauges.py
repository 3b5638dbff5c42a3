"""The webhook outbox's gauges, read from the ledger at scrape time (the API's
``/metrics``): how many events wait to be delivered, and how long the oldest of them
has waited — the figure that says a receiver (or the delivery workers) fell behind.
The attempts by outcome are a counter of the workers (observe/metrics.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from store.deliveries import DeliveryStore
from tasks.runtime import Runtime


class WebhookBacklogCollector:
    def __init__(self, runtime: Runtime) -> None:
        self.deliveries = DeliveryStore(runtime.db)

    def collect(self) -> Iterator[Metric]:
        count, oldest = self.deliveries.backlog()
        pending = GaugeMetricFamily(
            "notifyq_webhook_events_pending", "Webhook events not yet delivered (nor failed)"
        )
        pending.add_metric([], float(count))
        yield pending
        age = GaugeMetricFamily(
            "notifyq_webhook_oldest_pending_seconds",
            "Age of the oldest webhook event not yet delivered (0 when none waits)",
        )
        age.add_metric([], max(0.0, time.time() - oldest) if oldest is not None else 0.0)
        yield age
