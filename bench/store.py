"""The store a bench runs on: a fresh SQLite file, or a fresh database on a PostgreSQL
server (``--database-url``), migrated, and dropped afterwards; and what it holds.

``--database-url`` names the server and the role (its database part is ignored): each
run gets a database of its own, ``nq_bench_<random>``, so a bench never reads or leaves
anything in a database someone else uses.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from store.migrate import upgrade


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """``--database-url``: the PostgreSQL server a bench makes its fresh database on."""
    parser.add_argument(
        "--database-url", default=None, help="a PostgreSQL server (a fresh database), not SQLite"
    )


def kind(database_url: str | None) -> str:
    return "PostgreSQL" if database_url else "SQLite"


def driver_url(database_url: str) -> str:
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_database(server_url: str | None, directory: Path, name: str) -> Iterator[str]:
    """A migrated, empty store: SQLite in ``directory`` or a new PostgreSQL database."""

    if not server_url:
        url = f"sqlite:///{directory / f'{name}.db'}"
        upgrade(url)
        yield url
        return
    admin_url = make_url(driver_url(server_url))
    database = f"nq_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = admin_url.set(database=database).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


def stored_bytes(url: str) -> int:
    """Bytes the store occupies now (SQLite: the file after a WAL checkpoint)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return path.stat().st_size
    return _pg_number(url, "SELECT pg_database_size(current_database())")


def wal_lsn(url: str) -> int | None:
    """PostgreSQL's current WAL position in bytes (server-wide); None on SQLite."""
    if make_url(url).get_backend_name() == "sqlite":
        return None
    return _pg_number(url, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")


def _pg_number(url: str, query: str) -> int:
    """The one number ``query`` answers on a PostgreSQL server, on a connection of its own."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(query)).scalar_one())
    finally:
        engine.dispose()
