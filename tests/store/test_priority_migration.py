"""The migration that gives every notification a priority class (0006), on SQLite and
PostgreSQL: rows stored before it get the class they would be given now — a campaign's
rows ``bulk``, a verification's code and its fallback ``urgent``, any other ``normal`` —
and the way back drops the column and keeps the rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from store.migrate import _config, current
from tests.store.rows_before import at_revision, revision_before, store_rows

REVISION = "0006"


@pytest.fixture
def before_classes(database_url: str) -> Iterator[str]:
    """The test's database one revision before classes, holding a campaign's row, a
    single, and a verification's code (43) with its fallback (44)."""
    at_revision(database_url, revision_before(REVISION))
    store_rows(database_url, [(41, 7), (42, None), (43, None), (44, None)], code=43, fallback=44)
    yield database_url


def classes(url: str) -> dict[int, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, priority FROM notifications ORDER BY id"))
            return {row.id: row.priority for row in rows}
    finally:
        engine.dispose()


def test_rows_stored_before_classes_get_the_class_they_would_be_given_now(
    before_classes: str,
) -> None:
    command.upgrade(_config(before_classes), REVISION)
    assert current(before_classes) == REVISION
    assert classes(before_classes) == {41: "bulk", 42: "normal", 43: "urgent", 44: "urgent"}

    command.downgrade(_config(before_classes), revision_before(REVISION))
    engine = create_engine(before_classes)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("notifications")}
        with engine.connect() as conn:
            kept = conn.execute(text("SELECT count(*) FROM notifications")).scalar_one()
    finally:
        engine.dispose()
    assert "priority" not in columns and kept == 4
