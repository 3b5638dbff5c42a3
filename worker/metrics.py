"""Prometheus metrics, one registry per process (workers expose theirs on a port,
the API on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TRANSITIONS = Counter(
    "notifyq_transitions_total",
    "Status changes, by provider and new status",
    ["provider", "status"],
)
DEFERRALS = Counter(
    "notifyq_deferrals_total", "Notifications deferred, by reason kind", ["provider", "reason"]
)
RETRIES = Counter("notifyq_retries_total", "Transient failures retried", ["provider"])
PROVIDER_CALLS = Counter(
    "notifyq_provider_calls_total", "Provider requests by outcome", ["provider", "outcome"]
)
CIRCUIT_OPEN = Gauge("notifyq_circuit_open", "1 while a provider's circuit is open", ["provider"])
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
