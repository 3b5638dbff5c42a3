"""The tests start real services with the same supervisor as ``notifyq demo``."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import redis

from harness.supervise import NOTIFYQ, Proc, RedisServer, Stack, free_port, wait_until

__all__ = [
    "NOTIFYQ",
    "Proc",
    "RedisServer",
    "Stack",
    "free_port",
    "sentinel_watching",
    "wait_until",
]


@contextlib.contextmanager
def sentinel_watching(directory: Path, service: str) -> Iterator[tuple[int, RedisServer]]:
    """A Redis master and one Sentinel watching it as ``service`` (quorum 1): yields the
    Sentinel's port and the master, once the Sentinel names that master."""
    master = RedisServer(directory / "master", appendfsync=None)
    master.start()
    port = free_port()
    config = directory / "sentinel.conf"  # a Sentinel rewrites its config: a file of its own
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {service} 5000\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asker = redis.Redis(host="127.0.0.1", port=port)
        wait_until(
            lambda: _names(asker, service, master.port), 15, what="the sentinel knows the master"
        )
        yield port, master
    finally:
        proc.terminate()
        proc.wait(10)
        master.stop()


def _names(asker: redis.Redis, service: str, port: int) -> bool:
    try:
        # the raw command: redis-py 6.4's parser for the named method is broken ("once")
        reply = asker.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
    except (redis.ConnectionError, redis.ResponseError):
        return False
    return bool(reply) and int(reply[1]) == port
