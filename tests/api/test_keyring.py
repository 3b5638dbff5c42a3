"""The key ring of one API process over a real store and Redis: it reloads when a change is
announced and not otherwise (no store read per request), keeps the keys it knows while
the store cannot be read, and picks up again once it can."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from api.keyring import KeyRing, announce
from store.keys import KeyStore, Scope
from tasks.runtime import Runtime
from tests.services import wait_until


@pytest.fixture
def ring(runtime: Runtime) -> Iterator[KeyRing]:
    made = KeyRing(KeyStore(runtime.db), runtime.redis, runtime.settings.api_keys)
    yield made
    made.close()


def bearer(key: str) -> str:
    return f"Bearer {key}"


def test_a_change_is_loaded_only_when_announced(runtime: Runtime, ring: KeyRing) -> None:
    key = KeyStore(runtime.db).create("billing", {Scope.SEND})[1]
    assert not ring.refresh()  # nothing announced: nothing read from the store
    assert ring.grant(bearer(key)) is None  # (this starts the ring's own renewal)
    announce(runtime.redis)
    wait_until(lambda: ring.grant(bearer(key)), 5, what="the ring reloads")
    grant = ring.grant(bearer(key))
    assert grant is not None and (grant.name, grant.owner_filter) == ("billing", "billing")
    env = ring.grant(bearer(runtime.settings.api_keys[0].get_secret_value()))
    assert env is not None and (env.name, env.owner_filter) == ("admin", None)


def test_while_the_store_cannot_be_read_the_known_keys_stay(
    runtime: Runtime, ring: KeyRing
) -> None:
    keys = KeyStore(runtime.db)
    key = keys.create("billing", {Scope.SEND})[1]
    announce(runtime.redis)
    assert ring.refresh()
    with runtime.db.write() as conn:  # the store refuses every read of the keys
        conn.execute(text("ALTER TABLE api_keys RENAME TO api_keys_away"))
    announce(runtime.redis)
    assert not ring.refresh()
    assert ring.grant(bearer(key)) is not None
    with runtime.db.write() as conn:
        conn.execute(text("ALTER TABLE api_keys_away RENAME TO api_keys"))
    keys.revoke("billing")
    announce(runtime.redis)
    wait_until(lambda: ring.grant(bearer(key)) is None, 5, what="the ring reloads")


def test_a_store_that_cannot_be_read_is_said_once_and_its_return_once(
    runtime: Runtime, ring: KeyRing, caplog: pytest.LogCaptureFixture
) -> None:
    """While the store stays unreadable, every due reload fails: the first says so, the
    others keep quiet (with Redis away as well, one is due every second); the first that
    succeeds says the outage is over."""
    with runtime.db.write() as conn:
        conn.execute(text("ALTER TABLE api_keys RENAME TO api_keys_away"))
    with caplog.at_level(logging.INFO, logger="api.keyring"):
        for _ in range(3):
            announce(runtime.redis)
            assert not ring.refresh()
        with runtime.db.write() as conn:
            conn.execute(text("ALTER TABLE api_keys_away RENAME TO api_keys"))
        announce(runtime.redis)
        assert ring.refresh()
    said = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert said == [
        ("WARNING", "could not reload the API keys"),
        ("INFO", "the API keys are reloaded: the store answers again"),
    ]
