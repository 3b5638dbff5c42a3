"""initial ledger"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: store.status.Status's values as of this revision
STATUSES = (
    "queued",
    "deferred",
    "retrying",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "cancelled",
    "unknown",
)


def _id() -> sa.Column[int]:
    """A table's surrogate key; each table needs a column of its own."""
    return sa.Column("id", ID, autoincrement=True, nullable=False)


def _status() -> sa.Enum:
    """The status type as a string column; each column needs a type of its own."""
    return sa.Enum(*STATUSES, name="status", native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        _id(),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("route", sa.JSON(), nullable=True),
        sa.Column("template", sa.String(length=128), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("rate", sa.String(length=32), nullable=True),
        sa.Column("cron", sa.String(length=64), nullable=True),
        sa.Column("next_run_at", sa.Double(), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "provider_templates",
        _id(),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.String(length=255), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "template_id", name="uq_provider_template"),
    )
    op.create_table(
        "receipts",
        _id(),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("message", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("notification_id", ID, nullable=True),
        sa.Column("applied_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_receipts_ref"),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index("ix_receipts_unmatched", ["applied_at"], unique=False)

    op.create_table(
        "report_pulls",
        _id(),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("pulled_at", sa.Double(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=True),
        sa.Column("parsed_at", sa.Double(), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "campaign_recipients",
        _id(),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("to", sa.String(length=20), nullable=False),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("campaign_recipients", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campaign_recipients_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "notifications",
        _id(),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("to", sa.String(length=20), nullable=False),
        sa.Column("template", sa.String(length=128), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("route", sa.JSON(), nullable=True),
        sa.Column(
            "status",
            _status(),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=True),
        sa.Column("provider_code", sa.String(length=32), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("campaign_id", ID, nullable=True),
        sa.Column("next_attempt_at", sa.Double(), nullable=True),
        sa.Column("published_at", sa.Double(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notifications_campaign", ["campaign_id", "status", "published_at"], unique=False
        )
        batch_op.create_index("ix_notifications_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_notifications_ref", ["provider", "provider_ref"], unique=False)

    op.create_table(
        "events",
        _id(),
        sa.Column("notification_id", ID, nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column(
            "from_status",
            _status(),
            nullable=True,
        ),
        sa.Column(
            "to_status",
            _status(),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["notification_id"], ["notifications.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_events_notification_id"), ["notification_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_notification_id"))

    op.drop_table("events")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_ref")
        batch_op.drop_index("ix_notifications_due")
        batch_op.drop_index("ix_notifications_campaign")

    op.drop_table("notifications")
    with op.batch_alter_table("campaign_recipients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaign_recipients_campaign_id"))

    op.drop_table("campaign_recipients")
    op.drop_table("report_pulls")
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_unmatched")

    op.drop_table("receipts")
    op.drop_table("provider_templates")
    op.drop_table("campaigns")
