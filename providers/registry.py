"""Provider names (a contract: the names other services send) → their clients.

A new provider is one module and one line here. The settings object is passed in (any
object with the ``NOTIFYQ_*`` attributes), so this package imports nothing of ours
but its own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from providers.apispace import ApispaceSms, ApispaceVoice
from providers.base import Provider
from providers.ihuyi import Ihuyi
from providers.itniotech import Itniotech
from providers.jumdata import Jumdata

Factory = Callable[[Any], Provider]

FACTORIES: dict[str, Factory] = {
    "apispace-voice": lambda s: ApispaceVoice(
        s.apispace_token, s.apispace_base_url, s.apispace_report_base_url
    ),
    "apispace-sms": lambda s: ApispaceSms(s.apispace_token, s.apispace_base_url),
    "ihuyi": lambda s: Ihuyi(s.ihuyi_account, s.ihuyi_apikey, s.ihuyi_base_url),
    "jumdata": lambda s: Jumdata(
        s.jumdata_app_id, s.jumdata_app_secret, s.jumdata_base_url, s.callback_url("jumdata")
    ),
    "itniotech": lambda s: Itniotech(
        s.itniotech_api_key, s.itniotech_api_secret, s.itniotech_app_id, s.itniotech_base_url
    ),
}

NAMES: tuple[str, ...] = ("apispace-voice", "apispace-sms", "ihuyi", "jumdata", "itniotech")


class UnknownProvider(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown provider {name!r} (one of: {', '.join(available())})")


def available() -> list[str]:
    return [name for name in NAMES if name in FACTORIES]


def build(name: str, settings: Any) -> Provider:
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise UnknownProvider(name) from None
    return factory(settings)


def build_all(settings: Any) -> dict[str, Provider]:
    return {name: factory(settings) for name, factory in FACTORIES.items()}
