"""What a bench's ``main`` starts with: its argument parser, and a private Redis in a
temporary directory, stopped and removed however the run ends.

Imported after the bench has put the repository on ``sys.path`` (each bench runs as a
script: ``python bench/latency.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.signals import install_sigterm_as_interrupt
from harness.supervise import RedisServer


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The bench's parser, its help the module docstring as written. From here on SIGTERM
    stops what the run started, as Ctrl-C does."""
    install_sigterm_as_interrupt()
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


@contextlib.contextmanager
def private_redis(
    prefix: str, appendfsync: str | None = "everysec"
) -> Iterator[tuple[Path, RedisServer]]:
    """A temporary directory and a redis-server keeping its files there (AOF everysec by
    default, as in production; None: no AOF)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        directory = Path(tmp)
        server = RedisServer(directory / "redis", appendfsync=appendfsync)
        server.start()
        try:
            yield directory, server
        finally:
            server.stop()
