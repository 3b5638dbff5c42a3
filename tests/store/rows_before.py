"""A database brought to an older revision and holding rows written as that revision's
columns: what a migration test upgrades (tests/store/test_*_migration.py)."""

from __future__ import annotations

from collections.abc import Sequence

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from store.migrate import _config, current


def revision_before(revision: str) -> str:
    """The revision ``revision`` follows (whatever the chain holds before it)."""
    previous = ScriptDirectory.from_config(_config("")).get_revision(revision).down_revision
    assert isinstance(previous, str)
    return previous


def at_revision(database_url: str, revision: str) -> None:
    if current(database_url) is None:
        command.upgrade(_config(database_url), revision)
    else:  # the PostgreSQL fixture brings a new database to the head
        command.downgrade(_config(database_url), revision)


def store_rows(
    database_url: str,
    notifications: Sequence[tuple[int, int | None]],
    *,
    code: int,
    fallback: int | None = None,
) -> None:
    """Campaign 7, the notifications ``(id, campaign id or None)``, and verification 5
    whose code is notification ``code`` (its fallback, ``fallback``)."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaigns (id, name, status, provider, options, runs, total,"
                " rejected, errors, created_at, updated_at) VALUES"
                " (7, 'old', 'scheduled', 'ihuyi', '{}', 0, 1, 0, '[]', 1.0, 1.0)"
            )
        )
        for row_id, campaign in notifications:
            conn.execute(
                text(
                    'INSERT INTO notifications (id, provider, "to", content, params, options,'
                    " status, attempts, campaign_id, created_at, updated_at) VALUES"
                    " (:id, 'ihuyi', '+8613800138000', 'hello', '[]', '{}', 'queued',"
                    " 0, :campaign, 1.0, 1.0)"
                ),
                {"id": row_id, "campaign": campaign},
            )
        conn.execute(
            text(
                'INSERT INTO verifications (id, "to", purpose, channel, provider, salt,'
                " code_hmac, length, status, attempts, max_attempts, notification_id,"
                " fallback_id, expires_at, created_at, updated_at) VALUES (5,"
                " '+8613800138000', 'default', 'sms', 'apispace-sms', 'salt', 'hmac', 6,"
                " 'pending', 0, 5, :code, :fallback, 9e9, 1.0, 1.0)"
            ),
            {"code": code, "fallback": fallback},
        )
    engine.dispose()
