"""Which key is which, for one API process: the digest of a key → its :class:`Grant`,
held in memory and renewed when the keys change.

**No database round trip per request.** A request's key is hashed (SHA-256) and looked
up in a dict. The live keys are read from the store when the process starts and again
only when they change.

**A revoke reaches every process within a second.** ``notifyq keys create`` and
``revoke`` commit, then set :data:`VERSION_KEY` in Redis to a new random value
(:func:`announce`). A thread in each API process reads that version every :data:`POLL`
seconds and reloads the live keys when it changed. Random, not a counter: a Redis that
restarts empty would count from 1 again and could announce a version a process already
holds, and its change would go unseen. While Redis cannot be read, the thread reloads from the
store every second instead, so a revoke still takes effect within about a second;
while the store cannot be read it keeps the keys it has (no revoke can be committed
then either). Every :data:`FULL_RELOAD` seconds it reloads anyway.

**Constant time.** Nothing secret is compared byte by byte: the look-up is by the
digest of what was presented, and how long a look-up takes depends on that digest
alone, which tells nothing about any stored key (finding a key from a digest is the
thing SHA-256 makes impossible). A revoked, unknown or malformed key is simply a digest
that is not there: one path, one answer.

**Last used** is kept in memory per name and written at most once every
:data:`TOUCH_EVERY` seconds per process (``keys list`` shows it to the minute).

Keys in ``NOTIFYQ_API_KEYS`` are admin keys named ``admin`` (store/keys.py says why);
each keeps the idempotency namespace it had before keys had names (the first 16 hex
digits of its SHA-256), so a retry of a request made before the upgrade still finds it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from scheduler.limits import Cap, parse_caps
from store.keys import KeyRecord, KeyStore, Scope, digest
from store.schema import DEFAULT_OWNER

log = logging.getLogger(__name__)

#: a new random value after every committed change to the keys
VERSION_KEY = "nq:keys:version"
#: seconds between reads of the version
POLL = 0.25
#: seconds between reloads from the store while Redis cannot be read
BLIND_RELOAD = 1.0
#: seconds between reloads whatever the version says
FULL_RELOAD = 60.0
#: seconds between writes of "last used"
TOUCH_EVERY = 60.0
#: what each scope may do: ``send`` creates and reads; ``admin`` does everything
IMPLIED = {
    Scope.SEND: frozenset({Scope.SEND, Scope.READ}),
    Scope.READ: frozenset({Scope.READ}),
    Scope.ADMIN: frozenset(Scope),
}


@dataclass(frozen=True)
class Grant:
    """What a presented key may do: whose it is, in which scopes, within which limits."""

    #: the key's name: the owner of what it makes
    name: str
    scopes: frozenset[Scope]
    #: where this key's idempotency keys and campaign counts are kept apart from other
    #: keys': ``@<name>`` for a made key, ``k<16 hex>`` for a NOTIFYQ_API_KEYS key
    namespace: str
    #: requests per window (none: unlimited)
    rate: tuple[Cap, ...] = ()
    #: notifications a day (None: unlimited)
    daily_quota: int | None = None
    #: a key made with ``notifyq keys create`` (its use is recorded)
    stored: bool = False
    allowed: frozenset[Scope] = field(init=False)

    def __post_init__(self) -> None:
        allowed = frozenset(s for scope in self.scopes for s in IMPLIED[scope])
        object.__setattr__(self, "allowed", allowed)

    def may(self, scope: Scope) -> bool:
        return scope in self.allowed

    @property
    def owner_filter(self) -> str | None:
        """The owner every read of this key is narrowed to: its own name, or None (every
        owner) for an admin key."""
        return None if Scope.ADMIN in self.allowed else self.name


def env_grant(key: str) -> Grant:
    """A NOTIFYQ_API_KEYS key: admin, named ``admin``, its namespace derived from the key
    itself, so the rows it made before keys had names stay its own."""
    namespace = "k" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return Grant(DEFAULT_OWNER, frozenset({Scope.ADMIN}), namespace)


def stored_grant(record: KeyRecord) -> Grant:
    return Grant(
        record.name,
        record.scopes,
        f"@{record.name}",
        parse_caps(record.rate),
        record.daily_quota,
        stored=True,
    )


def bearer(header: str) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header, or None."""
    scheme, _, key = header.partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key else None


def announce(client: Redis) -> None:
    """Tell every API process that the keys changed (after the change is committed)."""
    client.set(VERSION_KEY, uuid.uuid4().hex)


class KeyRing:
    """Thread-safe: the grants are replaced whole, never changed in place."""

    def __init__(self, store: KeyStore, client: Redis, env_keys: Sequence[SecretStr]) -> None:
        self._store = store
        self._redis = client
        self._env = {
            digest(key.get_secret_value().strip()): env_grant(key.get_secret_value().strip())
            for key in env_keys
            if key.get_secret_value().strip()
        }
        self._grants: dict[str, Grant] = dict(self._env)
        self._version: bytes | None = None
        self._loaded_at = 0.0
        #: the last reload failed (its warning is said; the next success says it is over)
        self._stale = False
        self._used: dict[str, float] = {}
        self._touched_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.refresh(force=True)

    def grant(self, header: str) -> Grant | None:
        """The grant of the key in an ``Authorization`` header; None for no key, a
        malformed, unknown or revoked one alike."""
        self._watch()
        key = bearer(header)
        if key is None:
            return None
        found = self._grants.get(digest(key))
        if found is not None and found.stored:
            self._used[found.name] = time.time()
        return found

    @property
    def empty(self) -> bool:
        """No key at all: every request will be refused."""
        return not self._grants

    # -- renewal ----------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the live keys if the version moved (or Redis is away and the last
        load is a second old, or the last full reload a minute). True if reloaded."""
        now = time.monotonic()
        try:
            version = self._redis.get(VERSION_KEY)
            blind = False
        except RedisError:
            version, blind = self._version, True
        since = now - self._loaded_at
        due = (
            force
            or version != self._version
            or (blind and since >= BLIND_RELOAD)
            or since >= FULL_RELOAD
        )
        if not due:
            return False
        try:
            records = self._store.active()
        except SQLAlchemyError as exc:
            if not self._stale:  # once an outage, not once a second while Redis is away too
                log.warning(
                    "could not reload the API keys (%s): keeping those known until the store"
                    " answers",
                    type(exc).__name__,
                )
            self._stale = True
            return False
        if self._stale:
            log.info("the API keys are reloaded: the store answers again")
            self._stale = False
        self._grants = self._env | {r.digest: stored_grant(r) for r in records}
        self._version, self._loaded_at = version, now
        return True

    def _watch(self) -> None:
        """Start the renewal thread in the process that serves (after any fork)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=_renew, args=(weakref.ref(self), self._stop), name="notifyq-keyring"
            )
            self._thread.daemon = True
            self._thread.start()

    def tick(self) -> None:
        """One turn of the renewal thread: the version, and "last used" when due."""
        self.refresh()
        if time.monotonic() - self._touched_at >= TOUCH_EVERY:
            self.touch()

    def touch(self) -> None:
        """Write "last used" for the keys used since the last write."""
        self._touched_at = time.monotonic()
        used, self._used = self._used, {}
        try:
            self._store.touch(used)
        except SQLAlchemyError as exc:
            log.warning("could not record when API keys were used (%s)", type(exc).__name__)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.touch()


def _renew(ring: weakref.ref[KeyRing], stop: threading.Event) -> None:
    """The renewal thread: it holds its ring weakly and ends with it (an app that was
    never shut down does not leave a thread polling for ever)."""
    while not stop.wait(POLL):
        current = ring()
        if current is None:
            return
        try:
            current.tick()
        except Exception:  # the thread must outlive any one failure
            log.exception("the API keys could not be renewed")
        del current
