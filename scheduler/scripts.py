"""Load the ``.lua`` files beside this module once per client (EVALSHA from then on).

Redis scripts cannot import one another, so a line ``--#include NAME`` is replaced by
the text of ``NAME.lua`` when the source is read: the caps log's codec is written once
and inlined into each script that reads or writes that log.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from redis import Redis
from redis.commands.core import Script

_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


@cache
def source(name: str) -> str:
    text = resources.files("scheduler").joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda match: source(match.group(1)), text)


def load(client: Redis, name: str) -> Script:
    """A Script bound to ``client``: EVALSHA, with one SCRIPT LOAD after a flush."""
    return client.register_script(source(name))
