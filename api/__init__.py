"""HTTP for other services and providers: enqueue and status, campaigns, verifications,
suppressions, provider callbacks, the operator page and ``/metrics``.

Top of the house: it may import tasks (the producer API and the runtime) and everything
below them (store, scheduler, providers, config, observe); nothing imports it but the
command that serves it (``cli``).
"""
