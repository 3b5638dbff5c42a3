"""Database migrations (Alembic), run by ``notifyq db upgrade`` — and by every long-running
command and ``send`` on SQLite, where one file is the whole deployment.

PostgreSQL is never migrated implicitly: in production the schema moves when the
operator says so (one ``notifyq db upgrade`` before the new workers start); a process
that finds an old schema stops with that instruction instead of failing later.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaOutOfDate(RuntimeError):
    pass


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


@cache
def head() -> str:
    head = ScriptDirectory.from_config(_config("")).get_current_head()
    assert head is not None
    return head


def current(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@contextlib.contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.migrate-lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(url: str) -> None:
    with _sqlite_lock(url) if url.startswith("sqlite") else contextlib.nullcontext():
        command.upgrade(_config(url), "head")


_checked: set[str] = set()


def ensure_schema(url: str) -> None:
    """Bring SQLite up to date; refuse to run on an out-of-date PostgreSQL."""
    if url in _checked:
        return
    if make_url(url).get_backend_name() == "sqlite":
        if current(url) != head():
            upgrade(url)
    elif current(url) != head():
        raise SchemaOutOfDate("the database schema is not up to date: run `notifyq db upgrade`")
    _checked.add(url)
