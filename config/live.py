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

#: each provider's base-URL setting and the settings its client signs with (the names
#: its ``MissingCredentials`` gives; tests/cli/test_first_hour.py holds them to that)
SETTINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "apispace-voice": ("apispace_base_url", ("apispace_token",)),
    "apispace-sms": ("apispace_base_url", ("apispace_token",)),
    "ihuyi": ("ihuyi_base_url", ("ihuyi_account", "ihuyi_apikey")),
    "jumdata": ("jumdata_base_url", ("jumdata_app_id", "jumdata_app_secret")),
    "itniotech": (
        "itniotech_base_url",
        ("itniotech_api_key", "itniotech_api_secret", "itniotech_app_id"),
    ),
}


@dataclass(frozen=True)
class Unconfigured:
    """A provider at its live address, and the ``NOTIFYQ_*`` credentials it lacks."""

    provider: str
    missing: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.provider} ({', '.join(self.missing)})"


def live_without_credentials(settings: Settings) -> list[Unconfigured]:
    found = []
    for provider, (base_url, credentials) in SETTINGS.items():
        if getattr(settings, base_url) != Settings.model_fields[base_url].default:
            continue
        missing = tuple(  # an empty SecretStr is false, as an empty string is
            f"NOTIFYQ_{name.upper()}" for name in credentials if not getattr(settings, name)
        )
        if missing:
            found.append(Unconfigured(provider, missing))
    return found
