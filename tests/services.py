"""The tests start real services with the same supervisor as ``notifyq demo``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import redis

from harness.supervise import NOTIFYQ, Proc, RedisServer, Stack, free_port, wait_until

__all__ = [
    "NOTIFYQ",
    "Proc",
    "RedisServer",
    "Stack",
    "free_port",
    "processes_under",
    "redis_now",
    "run_notifyq",
    "sentinel_watching",
    "sleep_until",
    "wait_until",
]


def run_notifyq(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``notifyq ARGS`` as from a shell in ``cwd`` with exactly ``env``; its output kept."""
    return subprocess.run(
        [NOTIFYQ, *args], capture_output=True, text=True, env=dict(env), cwd=cwd, timeout=timeout
    )


def redis_now(client: redis.Redis) -> float:
    """Redis's own clock (``TIME``): the one the caps, rates and deferred set read."""
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def sleep_until(client: redis.Redis, moment: float) -> None:
    """Sleep until Redis's clock has passed ``moment``.

    Only to reach a moment at which something must be *allowed* (sleeping longer on a busy
    machine cannot make that false); every "still refused" check after it needs a window
    far longer than a scheduling delay left."""
    time.sleep(max(0.0, moment - redis_now(client) + 0.005))


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


def processes_under(directory: Path) -> dict[int, str]:
    """Live processes whose working directory is inside ``directory``: what a command run
    there started (the demo, ``notifyq dev``, a README session), pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next(
                line for line in (entry / "status").read_text().splitlines() if line[:6] == "State:"
            )
        except (OSError, StopIteration):
            continue
        if "Z" in state.split()[1]:
            continue  # a zombie has exited; its parent has yet to reap it
        if cwd == directory or directory in cwd.parents:
            found[int(entry.name)] = cmdline
    return found
