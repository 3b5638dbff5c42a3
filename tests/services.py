"""The tests start real services with the same supervisor as ``notifyq demo``."""

from harness.supervise import NOTIFYQ, Proc, RedisServer, Stack, free_port, wait_until

__all__ = ["NOTIFYQ", "Proc", "RedisServer", "Stack", "free_port", "wait_until"]
