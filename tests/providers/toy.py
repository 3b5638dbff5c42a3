"""A provider that lives in the tests: one module and one registry entry (the
``notifyq.providers`` entry point tests/providers/test_toy_provider.py installs), to
show that a provider needs nothing else of the product.

Its API: ``POST {base}/calls`` with ``{"id": 1, "to": "+86…", "text": "…"}`` and the
bearer token; the answer ``ok`` when the call is placed (its reference: ``toy-<id>``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, SecretStr

from providers import base
from providers.registry import Entry
from providers.settings import ProviderSettings

PLACED = base.CodeRule(base.Outcome.ACCEPTED, "placed")


class ToySettings(ProviderSettings):
    """``NOTIFYQ_TOY_*``: its token, its address, its caps, window and rate."""

    credentials = ("token",)

    token: SecretStr | None = Field(None, alias="toy_token")
    base_url: str = Field("https://toy.invalid", alias="toy_base_url")
    caps: str = Field("", alias="toy_caps")
    window: str = Field("", alias="toy_window")
    rate: str = Field("", alias="toy_rate")
    callback_token: SecretStr | None = Field(None, alias="toy_callback_token")


class Toy(base.Provider):
    name = "toy"

    def __init__(self, token: SecretStr | None, base_url: str) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")

    def validate(self, draft: base.Draft) -> base.Valid:
        to, errors = base.check_number(draft.to, kinds=base.MOBILE_TYPES, what="a CN mobile")
        text = (draft.content or "").strip()
        if not text:
            errors.append(base.FieldError("content", "required: the text"))
        if errors:
            raise base.InvalidRequest(errors)
        assert to is not None
        return base.Valid(to=to, template=None, content=text, params=(), options={})

    def build_send(self, messages: Sequence[base.Message], now: float) -> base.Call:
        (message,) = messages
        if self.token is None:
            raise base.MissingCredentials(self.name, "NOTIFYQ_TOY_TOKEN")
        return base.Call(
            "POST",
            f"{self.base_url}/calls",
            headers={"Authorization": f"Bearer {self.token.get_secret_value()}"},
            json={"id": message.id, "to": message.to, "text": message.content},
        )

    def parse_send(
        self, messages: Sequence[base.Message], reply: base.Reply
    ) -> list[base.SendResult]:
        if reply.text() != "ok":
            raise base.UnreadableReply("an answer other than ok")
        (message,) = messages
        return base.results_for(messages, PLACED, "ok", ref=f"toy-{message.id}")


ENTRY = Entry(ToySettings, lambda s, _: Toy(s.token, s.base_url))
