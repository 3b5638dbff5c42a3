"""What every provider is configured with, declared by the provider's own module.

Each provider module subclasses :class:`ProviderSettings` and names, as each field's
alias, the setting it is read from (``ihuyi_account`` is ``NOTIFYQ_IHUYI_ACCOUNT``).
The settings object (config/settings.py) reads those names from the environment for
every registered provider and hands out the provider's group whole, so no code outside
the provider's module spells a provider's setting. A field without an alias is no
setting: it keeps its default (a provider without its own callback token, say).

Caps, windows and rates stay text here, in the ``limits`` notation and ``HH:MM-HH:MM``:
the settings object parses them when a process starts, so a typo stops it.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

#: a number's caps when a provider documents none of its own
DEFAULT_NUMBER_CAPS = "1/second;3/minute;10/day"


class ProviderSettings(BaseModel):
    """One provider's settings: where its API is, how often and when a number may be
    called through it, how fast it takes requests, and the token of its callback URLs."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    #: the zone of :attr:`window` when the provider keeps it on its own clock (None:
    #: ``NOTIFYQ_TIMEZONE``)
    window_zone: ClassVar[str | None] = None
    #: the fields the client signs with: without them it refuses to send
    credentials: ClassVar[tuple[str, ...]] = ()

    base_url: str
    #: per-number caps (``limits`` notation; empty: none)
    caps: str = DEFAULT_NUMBER_CAPS
    #: calling window, ``HH:MM-HH:MM`` (empty: all day)
    window: str = ""
    #: provider-wide throughput (``limits`` notation; empty: unlimited)
    rate: str = ""
    #: the window is read on the recipient's own clock (the zone of their number)
    local_time: bool = False
    #: the secret path segment of this provider's callback URLs (None: the shared one)
    callback_token: SecretStr | None = None

    @classmethod
    def setting_fields(cls) -> tuple[str, ...]:
        """The fields read from a setting (those with an alias)."""
        return tuple(name for name, f in cls.model_fields.items() if f.alias)

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The settings this group is read from (``ihuyi_account``), without ``NOTIFYQ_``."""
        return tuple(cls.setting_of(name) for name in cls.setting_fields())

    @classmethod
    def setting_of(cls, field: str) -> str:
        """The setting ``field`` is read from (``account`` → ``ihuyi_account``)."""
        alias = cls.model_fields[field].alias
        if alias is None:
            raise KeyError(f"{cls.__name__}.{field} is read from no setting")
        return alias

    @classmethod
    def from_settings(cls, values: dict[str, object]) -> ProviderSettings:
        """The group from the flat settings read (those it is not read from are left)."""
        return cls.model_validate({k: v for k, v in values.items() if k in cls.setting_names()})

    def missing_credentials(self) -> tuple[str, ...]:
        """The credential settings left empty (an empty ``SecretStr`` is false, as an
        empty string is)."""
        return tuple(self.setting_of(name) for name in self.credentials if not getattr(self, name))

    def at_default_address(self) -> bool:
        """Whether :attr:`base_url` is the provider's live address (no stand-in)."""
        return bool(self.base_url == type(self).model_fields["base_url"].default)
