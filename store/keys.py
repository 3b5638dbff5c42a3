"""API keys with names, scopes and limits: made, listed and revoked by the operator
(``notifyq keys``), looked up by the API (api/keyring.py).

A key is ``nq_<name>_`` and then 32 random bytes (URL-safe base64), so whoever finds one
in a configuration file can tell which service it belongs to. It is shown once, when it
is made; the store keeps its SHA-256 digest only. A plain digest is enough: the key
holds 256 random bits, so nobody can search for a key that matches a digest, and the
API can find a key by its digest in one look-up.

**Owners.** What a key makes (notifications, campaigns, verifications, idempotency
keys) records the key's *name*, not the key: a revoked key's name still says who made
what, and a key made again under the same name (a rotation) sees what its predecessor
made. A name has at most one key that is not revoked.

**The name ``admin``** is the owner of everything made by ``NOTIFYQ_API_KEYS`` keys and
by the command line, and of every row made before keys had names (the migration's
default). One name serves all three because they are one party: before named keys,
``NOTIFYQ_API_KEYS`` were the only keys and the command line the only other way in, and
both are the operator's. Those keys are admin keys, so they see every row anyway;
giving the old rows any other name would make them nobody's. ``admin`` (and ``cli``,
which names the command line as the one that cancelled or paused) cannot be the name of
a made key, so no service can come to own the operator's rows by picking that name.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from scheduler.limits import CapSyntaxError, parse_caps
from store.db import Store
from store.refusals import BadField
from store.schema import DEFAULT_OWNER, OWNER_LENGTH, ApiKey, table_of

K = table_of(ApiKey)

#: what the command line records as the one who paused, resumed or cancelled
CLI_ACTOR = "cli"
RESERVED = frozenset({DEFAULT_OWNER, CLI_ACTOR})
NAME = re.compile(rf"^[a-z0-9][a-z0-9_.-]{{0,{OWNER_LENGTH - 1}}}$")
PREFIX = "nq_"
#: random bytes in a key (256 bits)
KEY_BYTES = 32


class Scope(StrEnum):
    """``send``: create, and read what it created; ``read``: read what it created;
    ``admin``: everything, every owner's rows, and the operator's routes."""

    SEND = "send"
    READ = "read"
    ADMIN = "admin"


class BadKeyRequest(BadField):
    """A key request the store refuses, naming the field (``name``, ``scope``, ``rate``,
    ``quota``)."""


@dataclass(frozen=True)
class KeyRecord:
    """A key as the store knows it: never the key itself."""

    name: str
    scopes: frozenset[Scope]
    #: requests per window (``limits`` notation), or None
    rate: str | None
    #: notifications a day, or None
    daily_quota: int | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    #: SHA-256 of the key, hex
    digest: str

    def public(self) -> dict[str, object]:
        """What ``keys list --json`` shows: no digest either."""
        return {
            "name": self.name,
            "scopes": sorted(self.scopes),
            "rate": self.rate,
            "daily_quota": self.daily_quota,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def mint(name: str) -> str:
    """A new key for ``name``: its prefix names it, the rest is random."""
    return f"{PREFIX}{name}_{secrets.token_urlsafe(KEY_BYTES)}"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise BadKeyRequest(
            "name", f"1 to {OWNER_LENGTH} of a-z 0-9 _ . - (starting with a letter or digit)"
        )
    if name in RESERVED:
        raise BadKeyRequest("name", f"{name!r} is reserved for the operator")
    return name


def parse_scopes(text: str) -> frozenset[Scope]:
    """``send,read`` → the scopes; an unknown or empty one is refused."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    known = {scope.value for scope in Scope}
    unknown = [part for part in parts if part not in known]
    if not parts or unknown:
        raise BadKeyRequest("scope", f"a comma-separated list of {', '.join(sorted(known))}")
    return frozenset(Scope(part) for part in parts)


def check_rate(rate: str | None) -> str | None:
    if rate is None or not rate.strip():
        return None
    try:
        parse_caps(rate)
    except CapSyntaxError as exc:
        raise BadKeyRequest("rate", str(exc)) from None
    return rate.strip()


def check_quota(quota: int | None) -> int | None:
    if quota is not None and quota < 1:
        raise BadKeyRequest("quota", "at least 1 notification a day")
    return quota


class KeyStore(Store):
    def create(
        self,
        name: str,
        scopes: Iterable[Scope],
        *,
        rate: str | None = None,
        daily_quota: int | None = None,
        now: float | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key for ``name``: its record, and the key (returned this once)."""
        check_name(name)
        wanted = frozenset(scopes)
        if not wanted:
            raise BadKeyRequest("scope", "at least one scope")
        rate = check_rate(rate)
        check_quota(daily_quota)
        key = mint(name)
        record = KeyRecord(
            name=name,
            scopes=wanted,
            rate=rate,
            daily_quota=daily_quota,
            created_at=time.time() if now is None else now,
            last_used_at=None,
            revoked_at=None,
            digest=digest(key),
        )
        try:
            with self.db.write() as conn:
                conn.execute(
                    insert(K),
                    {
                        **record.public(),
                        "scopes": ",".join(sorted(wanted)),
                        "digest": record.digest,
                    },
                )
        except IntegrityError:
            raise BadKeyRequest(
                "name", f"a key named {name!r} exists: revoke it first to make a new one"
            ) from None
        return record, key

    def active(self) -> list[KeyRecord]:
        """Every key not revoked (what the API accepts)."""
        with self.db.read() as conn:
            rows = conn.execute(select(K).where(K.c.revoked_at.is_(None)).order_by(K.c.name))
            return [_record(row._mapping) for row in rows]

    def listed(self, *, revoked: bool = False) -> list[KeyRecord]:
        """For ``keys list``: the live keys by name, and with ``revoked`` the revoked too."""
        query = select(K).order_by(K.c.name, K.c.created_at)
        if not revoked:
            query = query.where(K.c.revoked_at.is_(None))
        with self.db.read() as conn:
            return [_record(row._mapping) for row in conn.execute(query)]

    def revoke(self, name: str, *, now: float | None = None) -> bool:
        """The live key of ``name`` revoked; False if there is none."""
        now = time.time() if now is None else now
        with self.db.write() as conn:
            result = conn.execute(
                update(K).where(K.c.name == name, K.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            return bool(result.rowcount)

    def touch(self, used: Mapping[str, float]) -> None:
        """Record when each named key was last used (several API processes may write: the
        latest moment stays)."""
        if not used:
            return
        with self.db.write() as conn:
            for name, moment in used.items():
                conn.execute(
                    update(K)
                    .where(
                        K.c.name == name,
                        K.c.revoked_at.is_(None),
                        (K.c.last_used_at.is_(None)) | (K.c.last_used_at < moment),
                    )
                    .values(last_used_at=moment)
                )


def _record(row: RowMapping) -> KeyRecord:
    return KeyRecord(
        name=row["name"],
        scopes=frozenset(Scope(s) for s in row["scopes"].split(",") if s),
        rate=row["rate"],
        daily_quota=row["daily_quota"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        digest=row["digest"],
    )
