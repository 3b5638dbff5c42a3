"""verifications, suppressions, and a secret flag on notifications

``verifications`` keeps one row per code sent (its HMAC, never the code);
``suppressions`` the numbers that must not be called; ``notifications.secret`` marks a
notification whose content and params hold a code, erased once its send is final.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column("secret", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "verifications",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("to", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.String(length=32), nullable=False),
        sa.Column("code_hmac", sa.String(length=64), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(
            "notification_id",
            ID,
            sa.ForeignKey("notifications.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "fallback_id",
            ID,
            sa.ForeignKey("notifications.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_verifications_number", "verifications", ["to", "purpose", "status"])
    op.create_table(
        "suppressions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("to", sa.String(length=20), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("to", "provider", name="uq_suppressions_number"),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("ix_verifications_number", table_name="verifications")
    op.drop_table("verifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("secret")
