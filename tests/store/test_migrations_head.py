"""Every process checks its database against ``store.migrate.HEAD`` without importing
Alembic: the constant must be the head Alembic finds, or a new migration would never run."""

from __future__ import annotations

import pytest
from alembic import command

from store.migrate import (
    HEAD,
    SchemaOutOfDate,
    _config,
    current,
    ensure_schema,
    scripts_head,
    upgrade,
)


def test_the_head_constant_is_alembics_head() -> None:
    assert scripts_head() == HEAD


def test_a_new_database_is_brought_to_the_head_and_read_back_without_alembic(
    database_url: str,
) -> None:
    upgrade(database_url)
    assert current(database_url) == HEAD
    ensure_schema(database_url)  # up to date: nothing to do, nothing raised


def test_a_database_never_migrated_reads_as_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert current(f"sqlite:///{tmp_path / 'empty.db'}") is None


def test_an_older_sqlite_schema_is_brought_up_and_an_older_postgres_one_refused(
    database_url: str,
) -> None:
    upgrade(database_url)
    command.downgrade(_config(database_url), "0002")
    assert current(database_url) == "0002"
    if database_url.startswith("sqlite"):
        ensure_schema(database_url)
        assert current(database_url) == HEAD
    else:
        with pytest.raises(SchemaOutOfDate, match="notifyq db upgrade"):
            ensure_schema(database_url)
        upgrade(database_url)
