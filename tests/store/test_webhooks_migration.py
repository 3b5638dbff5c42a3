"""The migration that brings webhooks (0008), on SQLite and PostgreSQL: the upgraded
schema is the models' schema, and the way back drops the webhook tables and keeps
everything else."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from store import Database, NewNotification, NotificationStore
from store.migrate import _config, upgrade
from store.schema import Base
from store.webhooks import EndpointStore

REVISION = "0008"
TABLES = {"webhook_endpoints", "webhook_deliveries", "webhook_attempts"}


def test_the_upgraded_schema_is_the_models_and_the_way_back_keeps_the_rest(
    database_url: str,
) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in differences if "webhook" in str(d)] == []
    db = Database(database_url)
    (kept,) = NotificationStore(db).insert(
        [NewNotification("ihuyi", "+8613800138000", content="x")]
    )
    EndpointStore(db).create("shop", "https://93.184.216.34/hooks")
    db.dispose()
    before = ScriptDirectory.from_config(_config("")).get_revision(REVISION).down_revision
    assert isinstance(before, str)
    command.downgrade(_config(database_url), before)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert not tables & TABLES and "notifications" in tables
    upgrade(database_url)  # and forward again
    db = Database(database_url)
    assert NotificationStore(db).get(kept.id) is not None
    assert EndpointStore(db).listed(None) == []
    db.dispose()
    engine.dispose()
