"""Look-ups by number for the caps' floor; on PostgreSQL, events partitioned by day

``ix_notifications_to`` finds a number's notifications, so the calls the ledger recorded
for it (store/calls.py) are one indexed read when Redis's caps history may be short.

On PostgreSQL ``events`` becomes a table partitioned by day on ``at``, so that retention
drops a day's partition instead of deleting its rows (store/partitions.py): what the
table held goes to ``events_before_<today>``, today and the week ahead get a partition
each, and ``events_default`` catches anything else. The primary key becomes
``(id, at)`` (a partitioned table's keys include its partition column); ids still come
from the same sequence. The rows are copied once, in this migration's transaction:
run it when the table is small or in a quiet hour.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import op

revision = "0007"
down_revision = "0006"

#: days ahead made here; beat makes the later ones (store/partitions.py)
AHEAD = 7


def upgrade() -> None:
    op.create_index("ix_notifications_to", "notifications", ["to"])
    if op.get_context().dialect.name == "postgresql":
        _partition_events()


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        _unpartition_events()
    op.drop_index("ix_notifications_to", table_name="notifications")


def _start(day: datetime) -> float:
    return day.timestamp()


def _partition_events() -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    _set_aside("events_unpartitioned")
    op.execute(
        "CREATE TABLE events (LIKE events_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (at)"
    )
    _keys("events", "(id, at)")
    op.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
    op.execute(
        f"CREATE TABLE events_before_{today:%Y%m%d} PARTITION OF events "
        f"FOR VALUES FROM (MINVALUE) TO ({_start(today)})"
    )
    for offset in range(AHEAD + 1):
        day = today + timedelta(days=offset)
        op.execute(
            f"CREATE TABLE events_{day:%Y%m%d} PARTITION OF events "
            f"FOR VALUES FROM ({_start(day)}) TO ({_start(day + timedelta(days=1))})"
        )
    op.execute("INSERT INTO events SELECT * FROM events_unpartitioned")
    op.execute("DROP TABLE events_unpartitioned")


def _unpartition_events() -> None:
    _set_aside("events_partitioned")
    op.execute("CREATE TABLE events (LIKE events_partitioned INCLUDING DEFAULTS)")
    _keys("events", "(id)")
    op.execute("INSERT INTO events SELECT * FROM events_partitioned")
    op.execute("DROP TABLE events_partitioned")


def _set_aside(name: str) -> None:
    """``events`` renamed, and the names of its key and index freed for the new table;
    its sequence passes to whatever is named ``events`` next (see :func:`_keys`)."""
    op.execute(f"ALTER TABLE events RENAME TO {name}")
    op.execute(f"ALTER TABLE {name} RENAME CONSTRAINT events_pkey TO {name}_pkey")
    op.execute(f"ALTER INDEX ix_events_notification_id RENAME TO ix_{name}_notification_id")


def _keys(table: str, primary: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT events_pkey PRIMARY KEY {primary}")
    op.execute(
        f"ALTER TABLE {table} ADD CONSTRAINT events_notification_id_fkey "
        "FOREIGN KEY (notification_id) REFERENCES notifications (id) ON DELETE CASCADE"
    )
    op.execute(f"CREATE INDEX ix_events_notification_id ON {table} (notification_id)")
    op.execute(f"ALTER SEQUENCE events_id_seq OWNED BY {table}.id")
