"""Numbers that must not be called: add (idempotent), remove, list, and the batch look-up
dispatch makes before any call.

A suppression is a number (E.164) and a provider, or ``*`` for every provider. The
look-up takes a whole dispatch batch in one ``SELECT … WHERE to IN (…)`` on the unique
index, so admission pays one indexed read per batch, not one per row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from store.bulk import IN_LIST_LIMIT
from store.db import Store
from store.schema import Notification, Suppression, table_of

S = table_of(Suppression)
N = table_of(Notification)

#: the provider of a suppression that holds for every provider
ALL = "*"
#: the reason a notification ends with when its number is suppressed
PREFIX = "suppressed:"


@dataclass(frozen=True)
class NewSuppression:
    to: str
    provider: str
    reason: str
    source: str


@dataclass(frozen=True)
class Hit:
    """Why a number may not be called by one provider: ``everywhere`` when the
    suppression is for every provider (no other provider of a route may call it either)."""

    reason: str
    everywhere: bool


class SuppressionStore(Store):
    def add(self, entries: Sequence[NewSuppression], *, now: float) -> int:
        """Store what is not there yet (an existing suppression keeps its first reason);
        returns how many were new."""
        if not entries:
            return 0
        dialect = sqlite if self.db.is_sqlite else postgresql
        added = 0
        with self.db.write() as conn:
            for entry in entries:
                statement = (
                    dialect.insert(S)
                    .values(
                        to=entry.to,
                        provider=entry.provider,
                        reason=entry.reason[:64],
                        source=entry.source[:64],
                        created_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["to", "provider"])
                    .returning(S.c.id)  # rowcount is not reliable here across drivers
                )
                added += len(conn.execute(statement).all())
        return added

    def remove(self, to: str, provider: str | None = None) -> int:
        """Lift the number's suppressions: one provider's, or (None) every one."""
        statement = delete(S).where(S.c.to == to)
        if provider is not None:
            statement = statement.where(S.c.provider == provider)
        with self.db.write() as conn:
            return conn.execute(statement).rowcount or 0

    def get(self, to: str) -> list[Row[Any]]:
        with self.db.read() as conn:
            return list(conn.execute(select(S).where(S.c.to == to).order_by(S.c.provider)))

    def page(
        self, *, provider: str | None = None, after: int = 0, limit: int = 100
    ) -> list[Row[Any]]:
        """Suppressions in the order they were added, ``limit`` after id ``after``."""
        query = select(S).where(S.c.id > after).order_by(S.c.id).limit(limit)
        if provider is not None:
            query = query.where(S.c.provider == provider)
        with self.db.read() as conn:
            return list(conn.execute(query))

    def lookup(self, conn: Connection, numbers: Iterable[str]) -> dict[str, dict[str, str]]:
        """number → {provider or ``*``: reason}, for those of ``numbers`` suppressed."""
        wanted = sorted(set(numbers))
        found: dict[str, dict[str, str]] = defaultdict(dict)
        for start in range(0, len(wanted), IN_LIST_LIMIT):
            chunk = wanted[start : start + IN_LIST_LIMIT]
            for row in conn.execute(
                select(S.c.to, S.c.provider, S.c.reason).where(S.c.to.in_(chunk))
            ):
                found[row.to][row.provider] = row.reason
        return found

    def hits(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Hit]:
        """For (provider, number) pairs, those that may not be called, and why. An
        everywhere suppression wins over the provider's own (it also rules out a route)."""
        if not pairs:
            return {}
        with self.db.read() as conn:
            found = self.lookup(conn, (number for _, number in pairs))
        out: dict[tuple[str, str], Hit] = {}
        for provider, number in pairs:
            reasons = found.get(number)
            if not reasons:
                continue
            if ALL in reasons:
                out[(provider, number)] = Hit(reasons[ALL], everywhere=True)
            elif provider in reasons:
                out[(provider, number)] = Hit(reasons[provider], everywhere=False)
        return out

    def suppressed_in_campaign(self, campaign_id: int, *, owner: str | None = None) -> int:
        """How many of a campaign's rows ended ``failed`` because their number is
        suppressed (what a campaign reports beside its counts); with ``owner``, only
        rows that key name made (0 for another's campaign, as for none)."""
        query = select(func.count()).where(
            N.c.campaign_id == campaign_id, N.c.reason.like(f"{PREFIX}%")
        )
        if owner is not None:
            query = query.where(N.c.owner == owner)
        with self.db.read() as conn:
            return int(conn.execute(query).scalar_one())
