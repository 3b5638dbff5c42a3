"""a version on every notification, for compare-and-set status changes

Every status change increments it, and every change names the version it was decided
from (docs/duplicates.md): a duplicate task that read ``queued`` cannot act on a row
that has been ``sending`` and back to ``queued`` since.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("version")
