"""The migration that brings API keys and owners (0005), on SQLite and PostgreSQL: a
database holding rows at the revision before it is upgraded, every existing row then
belongs to ``admin`` (what NOTIFYQ_API_KEYS keys and the command line make), an admin key
reads them and a service's key gets 404; the schema then matches the models; and the
way back leaves the rows where they were."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import column, create_engine, inspect, select, table, text

from api.app import create_app
from store.keys import KeyStore, Scope
from store.migrate import HEAD, _config, current
from store.schema import Base
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS, embedded_settings
from tests.store.rows_before import at_revision, revision_before, store_rows

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

REVISION = "0005"
OWNED = ("notifications", "campaigns", "verifications")


def before_keys() -> str:
    """The revision 0005 follows (whatever the chain holds before it)."""
    return revision_before(REVISION)


@pytest.fixture
def old_database(database_url: str) -> Iterator[str]:
    """The test's database at the revision before keys, holding a campaign with a row, a
    single notification and a verification (written as that revision's columns)."""
    at_revision(database_url, before_keys())
    store_rows(database_url, [(41, 7), (42, None)], code=42)
    yield database_url


def owners(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = {
            name: set(conn.execute(select(column("owner")).select_from(table(name))).scalars())
            for name in OWNED
        }
    engine.dispose()
    return found


def test_existing_rows_go_to_admin_and_only_admin_keys_see_them(
    old_database: str, redis_url: str
) -> None:
    command.upgrade(_config(old_database), "head")
    assert current(old_database) == HEAD
    assert owners(old_database) == {table: {"admin"} for table in OWNED}

    runtime = Runtime.build(embedded_settings(old_database, redis_url))
    try:
        service = KeyStore(runtime.db).create("billing", {Scope.SEND})[1]
        admin = KeyStore(runtime.db).create("ops", {Scope.ADMIN})[1]
        env = TEST_CREDENTIALS["NOTIFYQ_API_KEYS"].split(",")[0]
        with TestClient(create_app(runtime.settings, runtime)) as client:
            for path in ("/v1/notifications/42", "/v1/campaigns/7", "/v1/verifications/5"):
                for key, status in ((env, 200), (admin, 200), (service, 404)):
                    answer = client.get(path, headers={"Authorization": f"Bearer {key}"})
                    assert answer.status_code == status, (path, answer.text)
    finally:
        runtime.close()


def test_the_upgraded_schema_is_the_models_schema(old_database: str) -> None:
    command.upgrade(_config(old_database), "head")
    engine = create_engine(old_database)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        indexes = {i["name"]: i for i in inspect(conn).get_indexes("api_keys")}
    engine.dispose()
    ours = [d for d in differences if "owner" in str(d) or "api_keys" in str(d)]
    assert ours == []
    assert indexes["uq_api_keys_live_name"]["unique"]


def test_the_way_back_keeps_the_rows(old_database: str) -> None:
    command.upgrade(_config(old_database), "head")
    command.downgrade(_config(old_database), before_keys())
    engine = create_engine(old_database)
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("notifications")}
        tables = set(inspect(conn).get_table_names())
        ids = set(conn.execute(text("SELECT id FROM notifications")).scalars())
    engine.dispose()
    assert "owner" not in columns
    assert "api_keys" not in tables
    assert ids == {41, 42}
    command.upgrade(_config(old_database), "head")  # and forward again
    assert owners(old_database)["notifications"] == {"admin"}
