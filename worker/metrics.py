"""Prometheus metrics, one registry per process (workers expose theirs on a port,
the API on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TRANSITIONS = Counter(
    "notifyq_transitions_total",
    "Status changes, by provider and new status",
    ["provider", "status"],
)
DEFERRALS = Counter(
    "notifyq_deferrals_total", "Notifications deferred, by reason kind", ["provider", "reason"]
)
RETRIES = Counter("notifyq_retries_total", "Transient failures retried", ["provider"])
STALE_CHANGES = Counter(
    "notifyq_stale_changes_total",
    "Status changes dropped because the row had moved on since it was read (a duplicate "
    "task, a racing sweeper or operator): each one a double call or overwrite prevented",
    ["status"],
)
PROVIDER_CALLS = Counter(
    "notifyq_provider_calls_total", "Provider requests by outcome", ["provider", "outcome"]
)
CAP_LATENCY = Histogram(
    "notifyq_cap_decision_seconds",
    "Time to decide the caps of one dispatch batch (one Redis round trip)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
CALL_LATENCY = Histogram(
    "notifyq_provider_call_seconds",
    "Provider request latency",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30),
)

VERIFICATIONS = Counter(
    "notifyq_verifications_total",
    "Verification codes created (sent), by channel",
    ["channel"],
)
VERIFICATION_LIMITED = Counter(
    "notifyq_verifications_limited_total",
    "Verification requests refused with 429: the number had its codes for now",
)
VERIFICATION_CHECKS = Counter(
    "notifyq_verification_checks_total",
    "Verification checks, by answer (approved, denied, expired, too_many_attempts)",
    ["result"],
)
SUPPRESSED = Counter(
    "notifyq_suppressed_total",
    "Notifications ended failed without a call because their number is suppressed",
    ["provider", "reason"],
)
SUPPRESSIONS_ADDED = Counter(
    "notifyq_suppressions_added_total",
    "Numbers suppressed, by where the suppression came from (a provider's code, api, cli)",
    ["source"],
)


class LedgerCollector:
    """Gauges read at scrape time from the source of truth (the ledger and Redis), so the
    API's /metrics is right however many workers run and whichever of them restarted."""

    def __init__(self, runtime) -> None:  # type: ignore[no-untyped-def]
        self.runtime = runtime

    def collect(self):  # type: ignore[no-untyped-def]
        from prometheus_client.core import GaugeMetricFamily
        from sqlalchemy import func, select

        from worker.store.schema import Notification

        table = Notification.__table__
        by_status = GaugeMetricFamily(
            "notifyq_notifications",
            "Notifications in the ledger by provider and status",
            labels=["provider", "status"],
        )
        with self.runtime.db.read() as conn:
            rows = conn.execute(
                select(table.c.provider, table.c.status, func.count()).group_by(
                    table.c.provider, table.c.status
                )
            )
            for provider, status, count in rows:
                by_status.add_metric([provider, getattr(status, "value", str(status))], count)
        yield by_status
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


def serve_worker_metrics(port: int | None) -> int | None:
    """Expose this worker process's counters; port 0 picks a free one. Returns the port."""
    import logging

    from prometheus_client import start_http_server

    if port is None:
        return None
    try:
        server, _ = start_http_server(port)
    except OSError as exc:
        logging.getLogger(__name__).warning("worker metrics not served on port %s: %s", port, exc)
        return None
    bound = server.server_port
    logging.getLogger(__name__).info("worker metrics on http://0.0.0.0:%s/metrics", bound)
    return bound
