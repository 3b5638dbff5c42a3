"""The worker process: the Celery app (``worker.app:celery``, the name Celery and Flower
are given), its queues, the beat schedule, what a worker does once ready, and the
container healthchecks. Nothing else.

``app``, ``beat`` and ``queues`` sit low (they import only config and observe), so the
tasks can import the app without a circle; ``ready`` and ``health`` sit on top, beside
``api``, and may import the tasks.
"""
