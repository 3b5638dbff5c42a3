"""``NOTIFYQ_*`` names that are no setting, each with the real one it is closest to.

pydantic-settings ignores a name that is no field (``extra="ignore"``: a ``.env`` may hold
other programs' variables too), so a misspelt ``NOTIFYQ_DATABSE_URL`` would leave the
default store in place without a word. Every command looks once, when it starts, at the
names of its environment and of ``.env``: a set difference, and a fuzzy match only for
the few names that are not settings.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings
from providers import registry

PREFIX = "NOTIFYQ_"
#: names the project's own tests and benchmarks read (NOTIFYQ_TEST_POSTGRES_URL, …)
NOT_SETTINGS = ("NOTIFYQ_TEST_", "NOTIFYQ_BENCH_")
#: how alike a name must be to a setting's to be taken for a misspelling of it
#: (NOTIFYQ_DATABSE_URL: 0.96; NOTIFYQ_REDIS_URI: 0.89; NOTIFYQ_DATABASE: 0.80)
CUTOFF = 0.8
#: a ``.env`` line's name, as python-dotenv reads it (``NAME=…``, ``export NAME=…``)
ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=", re.MULTILINE)


@dataclass(frozen=True)
class Misspelt:
    """A variable notifyq ignores, and the setting it probably meant."""

    name: str
    closest: str

    def __str__(self) -> str:
        return f"{self.name} is not a notifyq setting (ignored): did you mean {self.closest}?"


def setting_names() -> frozenset[str]:
    """Every setting's name after ``NOTIFYQ_``, upper-case (``DATABASE_URL``), each
    provider's (``IHUYI_ACCOUNT``) with them."""
    return frozenset(n.upper() for n in (*Settings.model_fields, *registry.setting_names()))


def misspelt(names: Iterable[str]) -> list[Misspelt]:
    """Of ``names``, those that look like a setting's but are none (matched as
    pydantic-settings matches them: whatever the case). The part after the prefix is
    compared, so the shared ``NOTIFYQ_`` does not make every name look alike."""
    known = setting_names()
    found = []
    for name in sorted({n.upper() for n in names}):
        if not name.startswith(PREFIX) or name.startswith(NOT_SETTINGS):
            continue
        rest = name.removeprefix(PREFIX)
        if rest in known:
            continue
        close = difflib.get_close_matches(rest, known, n=1, cutoff=CUTOFF)
        if close:
            found.append(Misspelt(name, PREFIX + close[0]))
    return found


def misspelt_here(
    environ: Mapping[str, str] | None = None, env_file: Path = Path(".env")
) -> list[Misspelt]:
    """The misspellings among this process's environment and the ``.env`` it reads."""
    names = set(os.environ if environ is None else environ)
    if env_file.is_file():
        names.update(ENV_LINE.findall(env_file.read_text(errors="replace")))
    return misspelt(names)
