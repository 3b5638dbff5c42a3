"""WHAT the workers do — dispatch, release, sweep, poll reports, run campaigns and
verifications — the runtime that wires their parts, and the producer API for services
that share this code::

    from tasks import enqueue
    result = enqueue("ihuyi", to="+86 138 0013 8000", content="您的订单号是：9633。")
    result.id, result.status

Middle floor: it may import the store, the scheduler, the providers, config, observe and
the Celery app object (``worker.app``); api, cli and ``worker.ready`` stand on it.
"""

from tasks.enqueue import enqueue, enqueue_many

__all__ = ["enqueue", "enqueue_many"]
