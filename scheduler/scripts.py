"""Load the ``.lua`` files beside this module once per client (EVALSHA from then on)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis import Redis
from redis.commands.core import Script


@cache
def source(name: str) -> str:
    return resources.files("scheduler").joinpath(f"{name}.lua").read_text(encoding="utf-8")


def load(client: Redis, name: str) -> Script:
    """A Script bound to ``client``: EVALSHA, with one SCRIPT LOAD after a flush."""
    return client.register_script(source(name))
