"""Pooled PostgreSQL connections are pinged only after they sat idle (store/db.py): a
connection the server closed while it was in the pool is replaced before a transaction
meets it, and one used a moment ago costs no ping."""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from store import Database


def backend_pid(db: Database) -> int:
    with db.read() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def terminate(database_url: str, pid: int) -> None:
    admin = Database(database_url, pool_size=1, max_overflow=0)
    with admin.write() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar_one()
    admin.dispose()


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no server to lose a pooled connection to")
    return database_url


def test_a_connection_closed_while_idle_is_replaced_before_use(postgres_url: str) -> None:
    db = Database(postgres_url, pool_size=1, max_overflow=0, ping_after_idle=0.0)
    first = backend_pid(db)
    terminate(postgres_url, first)  # as a server restart or a failover would
    second = backend_pid(db)  # pinged on checkout, found dead, replaced: no error
    assert second != first
    db.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(postgres_url: str) -> None:
    db = Database(postgres_url, pool_size=1, max_overflow=0, ping_after_idle=3600.0)
    first = backend_pid(db)
    terminate(postgres_url, first)
    # no ping: the transaction itself meets the closed connection (what the saved round
    # trip risks, inside the idle threshold only) ...
    with pytest.raises(exc.OperationalError):
        backend_pid(db)
    # ... and the pool, having seen the disconnect, hands out a fresh one next
    assert backend_pid(db) != first
    db.dispose()
