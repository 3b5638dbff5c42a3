"""Webhook endpoints: made, listed, rotated and deleted by the API key that owns them.

An endpoint belongs to the name of the key that made it (store/keys.py), as every row
does: another key's reads find nothing (and the API answers 404), admin keys see all.
Its secret is shown once, when it is made or rotated; a rotation keeps the secret it
replaces signing beside the new one for an overlap, so a receiver can switch over
without dropping a message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from store.db import Store
from store.refusals import BadField
from store.schema import WebhookEndpoint, table_of
from webhooks import EVENT_TYPES, new_secret

W = table_of(WebhookEndpoint)


class BadEndpoint(BadField):
    """An endpoint request refused, naming the field."""


@dataclass(frozen=True)
class Endpoint:
    id: int
    owner: str
    url: str
    #: None: every event
    events: tuple[str, ...] | None
    description: str | None
    created_at: float
    failing_since: float | None
    disabled_at: float | None

    def wants(self, event_type: str) -> bool:
        return self.disabled_at is None and (self.events is None or event_type in self.events)

    def public(self) -> dict[str, Any]:
        """What the API and the command line show: never the secret."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events) if self.events is not None else list(EVENT_TYPES),
            "description": self.description,
            "created_at": self.created_at,
            "failing_since": self.failing_since,
            "disabled": self.disabled_at is not None,
            "disabled_at": self.disabled_at,
        }


def check_events(events: Sequence[str] | None) -> tuple[str, ...] | None:
    """The event filter as stored: None for every event, else the known names asked for."""
    if events is None:
        return None
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        known = ", ".join(EVENT_TYPES)
        raise BadEndpoint("events", f"unknown {', '.join(unknown)}; known: {known}")
    if not events:
        raise BadEndpoint("events", "at least one event (leave it out for every event)")
    return tuple(sorted(set(events)))


class EndpointStore(Store):
    def create(
        self,
        owner: str,
        url: str,
        *,
        events: Sequence[str] | None = None,
        description: str | None = None,
        now: float | None = None,
    ) -> tuple[Endpoint, str]:
        """A new endpoint (``url`` already checked by the caller) and its secret, returned
        this once."""
        wanted = check_events(events)
        secret = new_secret()
        now = time.time() if now is None else now
        values = {
            "owner": owner,
            "url": url,
            "events": list(wanted) if wanted is not None else None,
            "description": description,
            "secret": secret,
            "created_at": now,
        }
        with self.db.write() as conn:
            new_id: int = conn.execute(insert(W).returning(W.c.id), values).scalar_one()
        endpoint = Endpoint(new_id, owner, url, wanted, description, now, None, None)
        return endpoint, secret

    def listed(self, owner: str | None) -> list[Endpoint]:
        """The endpoints of ``owner`` (None: every owner's)."""
        query = select(W).order_by(W.c.id)
        if owner is not None:
            query = query.where(W.c.owner == owner)
        with self.db.read() as conn:
            return [_endpoint(row._mapping) for row in conn.execute(query)]

    def get(self, endpoint_id: int, owner: str | None) -> Endpoint | None:
        query = select(W).where(W.c.id == endpoint_id)
        if owner is not None:
            query = query.where(W.c.owner == owner)
        with self.db.read() as conn:
            row = conn.execute(query).first()
        return _endpoint(row._mapping) if row is not None else None

    def delete(self, endpoint_id: int, owner: str | None) -> bool:
        """Gone with its deliveries and their log (False: none of ``owner``'s)."""
        query = delete(W).where(W.c.id == endpoint_id)
        if owner is not None:
            query = query.where(W.c.owner == owner)
        with self.db.write() as conn:
            return bool(conn.execute(query).rowcount)

    def rotate(
        self, endpoint_id: int, owner: str | None, *, overlap: float, now: float | None = None
    ) -> str | None:
        """A new secret (returned this once); the one it replaces keeps signing for
        ``overlap`` seconds. None: no such endpoint of ``owner``."""
        now = time.time() if now is None else now
        secret = new_secret()
        query = update(W).where(W.c.id == endpoint_id)
        if owner is not None:
            query = query.where(W.c.owner == owner)
        with self.db.write() as conn:
            done = conn.execute(
                query.values(
                    previous_secret=W.c.secret, previous_until=now + overlap, secret=secret
                )
            )
        return secret if done.rowcount else None


def signing_secrets(row: Any, now: float) -> list[str]:
    """The secrets a message to this endpoint row is signed with now: its own, and the
    one it replaced while the rotation's overlap lasts."""
    secrets_ = [row.secret]
    if row.previous_secret and row.previous_until is not None and now < row.previous_until:
        secrets_.append(row.previous_secret)
    return secrets_


def _endpoint(row: Any) -> Endpoint:
    events = row["events"]
    return Endpoint(
        id=row["id"],
        owner=row["owner"],
        url=row["url"],
        events=tuple(events) if events is not None else None,
        description=row["description"],
        created_at=row["created_at"],
        failing_since=row["failing_since"],
        disabled_at=row["disabled_at"],
    )
