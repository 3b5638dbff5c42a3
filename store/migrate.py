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
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from store.db import make_sqlite_folder, opening

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
#: the newest migration. Every process checks its database against it at start-up, so it
#: is a constant rather than Alembic's answer: importing Alembic and reading the scripts
#: cost 0.4 s of CPU a process (worker, beat, API, each CLI command), while a database
#: that is up to date needs neither. tests/store/test_migrations_head.py keeps it equal
#: to the head Alembic finds in store/migrations/versions/.
HEAD = "0008"


class SchemaOutOfDate(RuntimeError):
    pass


def _config(url: str) -> Config:
    from alembic.config import Config  # noqa: PLC0415  (only when a schema moves: see HEAD)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def head() -> str:
    return HEAD


def scripts_head() -> str | None:
    """The head Alembic finds among the migration scripts (what ``HEAD`` must equal)."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415  (see HEAD)

    return ScriptDirectory.from_config(_config("")).get_current_head()


def current(url: str) -> str | None:
    """The revision the database is at (None: never migrated), read as Alembic keeps it:
    the one row of ``alembic_version``. The first thing every process reads, so this is
    where a missing SQLite folder is made and an unopenable database is named
    (``store.db.opening``)."""
    engine = create_engine(url)
    try:
        with opening(url), engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


@contextlib.contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    database = make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    make_sqlite_folder(url)
    with open(f"{database}.migrate-lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(url: str) -> None:
    """Apply the migrations the database lacks. It is read first (:func:`current`), so a
    database that cannot be opened is named as that, not as a migration that failed."""
    if current(url) == head():
        return
    with _sqlite_lock(url) if url.startswith("sqlite") else contextlib.nullcontext():
        from alembic import command  # noqa: PLC0415  (see HEAD)

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
