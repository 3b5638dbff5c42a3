"""Look-ups by number, for the caps' floor

``ix_notifications_to`` finds a number's notifications, so the calls the ledger recorded
for it (store/calls.py) are one indexed read when Redis's caps history may be short.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03 13:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_notifications_to", "notifications", ["to"])


def downgrade() -> None:
    op.drop_index("ix_notifications_to", table_name="notifications")
