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
ENQUEUE_TO_CALL = Histogram(
    "notifyq_enqueue_to_call_seconds",
    "From a notification's enqueue to its provider call leaving, by priority class and "
    "provider: what a code waits behind, if anything",
    ["priority", "provider"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
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
#: what a webhook attempt came to (tasks/webhooks.py ``outcome_of``)
WEBHOOK_OUTCOMES = (
    "success",
    "http_4xx",
    "http_5xx",
    "http_other",
    "timeout",
    "refused",
    "network",
)
WEBHOOK_ATTEMPTS = Counter(
    "notifyq_webhook_attempts_total",
    "Webhook delivery attempts by outcome (success, http_4xx, http_5xx, http_other, "
    "timeout, refused: an address not public, network)",
    ["outcome"],
)
