"""What a process tells the operator: the Prometheus counters it increments as it works
(``metrics``) and the log format with its redaction of numbers and secrets (``logs``).

Ground floor: it imports nothing of ours, so the store and the tasks can count and log.
The scrape-time gauges that read Redis and the ledger stand above the runtime, in
``tasks/gauges.py``.
"""
