"""Alembic environment: the URL comes from the caller (store/migrate.py), never a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from store.schema import Base

config = context.config
url: str = config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or ""


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
