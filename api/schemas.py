"""The JSON shapes of the HTTP API (a contract: README "Send from anywhere")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_TEXT = 2000


def unstorable(value: Any) -> str | None:
    """Why ``value`` (a string, or JSON nested to any depth) holds text the ledger cannot
    keep, or None. PostgreSQL refuses NUL in text; a lone surrogate (``"\\ud800"``
    is valid JSON) cannot be encoded as UTF-8 for either store. Refused here, at the
    door, such a value is a 422 naming its field instead of a 500 at the insert — and
    the same request is refused on SQLite and PostgreSQL alike. Iterative, so JSON
    nested as deep as the parser allows cannot exhaust the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "must not contain NUL characters"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "must be Unicode text (it holds a lone surrogate)"
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


class StorableModel(BaseModel):
    """A request body whose every field is checked by :func:`unstorable` first."""

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        reason = unstorable(value)
        if reason is not None:
            raise ValueError(reason)
        return value


def iso(moment: float | None) -> str | None:
    return (
        None
        if moment is None
        else datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
    )


class Leg(StorableModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(max_length=32)
    template: str | None = Field(None, max_length=128)
    content: str | None = Field(None, max_length=MAX_TEXT)
    params: list[str] = Field(default_factory=list, max_length=50)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("template", mode="before")
    @classmethod
    def _template_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("params", mode="before")
    @classmethod
    def _params_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value


class NotificationIn(Leg):
    to: str = Field(max_length=32)
    route: list[Leg] = Field(default_factory=list, max_length=4)
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)
    not_before: str | float | None = None
    #: urgent, normal or bulk: checked with the rest of the request (tasks/requests.py)
    priority: str | None = Field(None, max_length=16)


class Accepted(BaseModel):
    id: int
    status: str


class FieldErrorOut(BaseModel):
    field: str
    message: str


class Errors(BaseModel):
    errors: list[FieldErrorOut]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notifications: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class BatchItem(BaseModel):
    index: int
    id: int | None = None
    status: str | None = None
    created: bool | None = None
    errors: list[FieldErrorOut] | None = None


class BatchOut(BaseModel):
    accepted: int
    rejected: int
    items: list[BatchItem]


class EventOut(BaseModel):
    at: str | None
    from_status: str | None = Field(serialization_alias="from")
    to_status: str = Field(serialization_alias="to")
    reason: str | None
    detail: dict[str, Any] | None


class NotificationOut(BaseModel):
    id: int
    provider: str
    to: str
    status: str
    reason: str | None
    attempts: int
    provider_ref: str | None
    provider_code: str | None
    next_attempt_at: str | None
    created_at: str | None
    campaign_id: int | None
    priority: str
    events: list[EventOut]
