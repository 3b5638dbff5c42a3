"""The notification row and its route legs as the store hands them out: frozen
dataclasses, built once from a result row and read by attribute.

Frozen, because a row is what a task *read*: every change goes back through
:meth:`~store.notifications.NotificationStore.transition` as a compare-and-set on that
read, never by editing the object. Typed, so that the send path (admission, the call,
the outcome) knows what it holds without going back to the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Row

from providers.base import Leg
from scheduler.priority import Priority
from store.status import Status


@dataclass(frozen=True)
class RouteLeg(Leg):
    """One provider a notification may move on to, with what to send through it."""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RouteLeg:
        """A leg as the ``route`` column stores it."""
        return cls(
            provider=str(raw["provider"]),
            template=raw.get("template"),
            content=raw.get("content"),
            params=tuple(str(p) for p in raw.get("params") or ()),
            options=dict(raw.get("options") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        """The leg as the ``route`` column stores it (every key, always)."""
        return {
            "provider": self.provider,
            "template": self.template,
            "content": self.content,
            "params": list(self.params),
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class NotificationRow:
    """One notification as read: every column of ``notifications``."""

    id: int
    provider: str
    to: str
    template: str | None
    content: str | None
    params: tuple[str, ...]
    options: Mapping[str, Any]
    #: the legs not yet tried, in order (empty: none left)
    route: tuple[RouteLeg, ...]
    status: Status
    reason: str | None
    attempts: int
    version: int
    provider_ref: str | None
    provider_code: str | None
    secret: bool
    idempotency_key: str | None
    campaign_id: int | None
    owner: str
    #: its class (scheduler/priority.py): its broker queue, its share of calls and rates
    priority: Priority
    next_attempt_at: float | None
    published_at: float | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Row[Any]) -> NotificationRow:
        """From a ``SELECT`` of the whole table (the fields are its columns, by name)."""
        values = row._mapping
        plain = {name: values[name] for name in _NAMES}
        return cls(
            **{
                **plain,
                "params": tuple(str(p) for p in plain["params"] or ()),
                "options": dict(plain["options"] or {}),
                "route": tuple(RouteLeg.from_json(leg) for leg in plain["route"] or ()),
                "status": Status(plain["status"]),
                "secret": bool(plain["secret"]),
                "priority": Priority(plain["priority"]),
            }
        )


#: the fields of a row, in order: the columns ``from_row`` reads by name
_NAMES = tuple(f.name for f in fields(NotificationRow))
