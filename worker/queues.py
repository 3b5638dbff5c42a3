"""The broker's two queues: sends, and the clock-driven control tasks beside them.

A deep backlog of sends must not delay the pump that releases deferred ones, so the
beat's tasks have a queue of their own.
"""

DISPATCH_QUEUE = "notifyq"
CONTROL_QUEUE = "notifyq.control"
WEBHOOK_QUEUE = "notifyq.webhooks"  # webhook deliveries: a slow receiver never holds up a send
