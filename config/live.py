"""Providers that point at their live API without the credentials it asks for.

Such a provider's sends never leave: its client refuses them (``MissingCredentials``), the
circuit opens, and its notifications wait. A worker says so once when it starts, naming
the settings to set, instead of leaving a newcomer to find it in a notification's reason.
A provider pointed anywhere else (the sandbox, a stand-in) is left alone: what that
server asks for is its business.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import Settings
from providers import registry


@dataclass(frozen=True)
class Unconfigured:
    """A provider at its live address, and the ``NOTIFYQ_*`` credentials it lacks."""

    provider: str
    missing: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.provider} ({', '.join(self.missing)})"


def credential_settings(provider: str) -> tuple[str, ...]:
    """The settings ``provider``'s client signs with (the names its ``MissingCredentials``
    gives; tests/cli/test_first_hour.py holds them to that), without ``NOTIFYQ_``."""
    kind = registry.entry(provider).settings
    return tuple(kind.setting_of(field) for field in kind.credentials)


def live_without_credentials(settings: Settings) -> list[Unconfigured]:
    found = []
    for provider in registry.names():
        group = settings.provider(provider)
        missing = tuple(f"NOTIFYQ_{name.upper()}" for name in group.missing_credentials())
        if group.at_default_address() and missing:
            found.append(Unconfigured(provider, missing))
    return found
