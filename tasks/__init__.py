"""WHAT the workers do — dispatch, release, sweep, poll reports, run campaigns — and the
producer API for services that share this code::

    from tasks import enqueue
    result = enqueue("ihuyi", to="+86 138 0013 8000", content="您的订单号是：9633。")
    result.id, result.status
"""

from tasks.enqueue import enqueue, enqueue_many

__all__ = ["enqueue", "enqueue_many"]
