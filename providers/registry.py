"""Provider names (a contract: the names other services send) → their settings and clients.

A new provider is one module (its client and its :class:`~providers.settings.ProviderSettings`)
and one :class:`Entry`: a line in :data:`BUILT_IN`, or, for a provider that lives in
another package, an entry point in the ``notifyq.providers`` group naming its Entry
(how the tests add one of their own). Nothing else names a provider: the settings read
each entry's group, the workers build each entry's client.

The settings object is passed in (anything with :class:`Configured`'s two methods), so
this package imports nothing of ours but its own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Generic, Protocol, TypeVar

from providers.apispace import (
    ApispaceSms,
    ApispaceSmsSettings,
    ApispaceVoice,
    ApispaceVoiceSettings,
)
from providers.base import Provider
from providers.ihuyi import Ihuyi, IhuyiSettings
from providers.itniotech import Itniotech, ItniotechSettings
from providers.jumdata import Jumdata, JumdataSettings
from providers.settings import ProviderSettings

S = TypeVar("S", bound=ProviderSettings)
#: a callback route (``jumdata``, ``ihuyi/receipt``) → its URL on our API, or None while
#: no callback token is set
Links = Callable[[str], "str | None"]
#: the group of entry points that add providers from other packages
PLUGINS = "notifyq.providers"


@dataclass(frozen=True)
class Entry(Generic[S]):
    """A provider: the settings group it is configured with, and how its client is built."""

    settings: type[S]
    build: Callable[[S, Links], Provider]


class Configured(Protocol):
    """What :func:`build` reads of the settings object."""

    def provider(self, name: str) -> ProviderSettings: ...

    def callback_url(self, route: str) -> str | None: ...


BUILT_IN: dict[str, Entry[Any]] = {
    "apispace-voice": Entry(
        ApispaceVoiceSettings,
        lambda s, _: ApispaceVoice(s.token, s.base_url, s.report_base_url),
    ),
    "apispace-sms": Entry(ApispaceSmsSettings, lambda s, _: ApispaceSms(s.token, s.base_url)),
    "ihuyi": Entry(IhuyiSettings, lambda s, _: Ihuyi(s.account, s.apikey, s.base_url)),
    "jumdata": Entry(
        JumdataSettings,
        lambda s, links: Jumdata(s.app_id, s.app_secret, s.base_url, links("jumdata")),
    ),
    "itniotech": Entry(
        ItniotechSettings,
        lambda s, _: Itniotech(s.api_key, s.api_secret, s.app_id, s.base_url),
    ),
}

#: the providers this package holds, in the order they are listed
NAMES: tuple[str, ...] = tuple(BUILT_IN)


class UnknownProvider(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown provider {name!r} (one of: {', '.join(available())})")


class BadPlugin(ValueError):
    """A ``notifyq.providers`` entry point that names no Entry, or a provider name taken."""


@lru_cache(maxsize=1)
def entries() -> dict[str, Entry[Any]]:
    """Every provider: this package's, then those other installed packages add (read
    once per process, when first asked: never at import)."""
    found = dict(BUILT_IN)
    for point in entry_points(group=PLUGINS):
        if point.name in found:
            raise BadPlugin(f"entry point {point.name} = {point.value}: the name is taken")
        entry = point.load()
        if not isinstance(entry, Entry):
            raise BadPlugin(f"entry point {point.name} = {point.value} is no providers.Entry")
        found[point.name] = entry
    return found


def setting_names() -> frozenset[str]:
    """Every provider's settings, by their names without ``NOTIFYQ_`` (``ihuyi_account``)."""
    return frozenset(name for e in entries().values() for name in e.settings.setting_names())


def names() -> tuple[str, ...]:
    return tuple(entries())


def available() -> list[str]:
    return list(names())


def entry(name: str) -> Entry[Any]:
    try:
        return entries()[name]
    except KeyError:
        raise UnknownProvider(name) from None


def build(name: str, settings: Configured) -> Provider:
    return entry(name).build(settings.provider(name), settings.callback_url)


def build_all(settings: Configured) -> dict[str, Provider]:
    return {name: build(name, settings) for name in names()}
