"""a priority class on every notification: urgent, normal or bulk

Rows stored before classes existed get the class they would have been given: a
campaign's rows ``bulk``, a verification's notifications ``urgent``, every other one
``normal`` (the column's default, which fills them without rewriting the table).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column(
        "notifications",
        sa.Column("priority", sa.String(8), nullable=False, server_default="normal"),
    )
    op.execute("UPDATE notifications SET priority = 'bulk' WHERE campaign_id IS NOT NULL")
    op.execute(
        "UPDATE notifications SET priority = 'urgent' WHERE id IN "
        "(SELECT notification_id FROM verifications WHERE notification_id IS NOT NULL "
        "UNION SELECT fallback_id FROM verifications WHERE fallback_id IS NOT NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("priority")
