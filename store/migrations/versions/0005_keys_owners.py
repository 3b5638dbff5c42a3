"""API keys in the store, and an owner on every notification, campaign and verification

``api_keys`` holds the keys made with ``notifyq keys create`` (a digest, never the key).
``owner`` names the key that made a row; rows made before keys had names were made with
``NOTIFYQ_API_KEYS`` keys or the command line, so they go to ``admin``, the owner those
still make (store/keys.py says why).

Adding a column with a constant default fills existing rows without rewriting them on
PostgreSQL (11 and later) and SQLite alike.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: store.schema.DEFAULT_OWNER and OWNER_LENGTH as of this revision
DEFAULT_OWNER = "admin"
OWNER_LENGTH = 48
OWNED = ("notifications", "campaigns", "verifications")


def upgrade() -> None:
    for table in OWNED:
        op.add_column(
            table,
            sa.Column(
                "owner", sa.String(OWNER_LENGTH), nullable=False, server_default=DEFAULT_OWNER
            ),
        )
    op.create_index("ix_campaigns_owner", "campaigns", ["owner", "id"])
    op.create_table(
        "api_keys",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(OWNER_LENGTH), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(32), nullable=False),
        sa.Column("rate", sa.String(64), nullable=True),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_used_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_index(
        "uq_api_keys_live_name",
        "api_keys",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_api_keys_live_name", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index("ix_campaigns_owner", table_name="campaigns")
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("owner")
