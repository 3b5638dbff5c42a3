"""Retention (store/retention.py, store/partitions.py): with the clock past
``NOTIFYQ_RETENTION_DAYS``, finished notifications go with their events and receipts,
and so do unmatched receipts, report pulls and verifications older than it; what is
recent, and a notification still on its way however old, stay. On SQLite and
PostgreSQL; on PostgreSQL the old day's events partition is dropped whole.

The rows are written at a moment ``OLD`` (now, by the wall clock: the migration made
today's partition) and pruned as at ``OLD`` + 91 days, a 90-day retention."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select, text

from store import Change, Database, Expect, NewNotification, NotificationStore, Status
from store.migrate import ensure_schema
from store.retention import DAY, Retention
from store.schema import Event, Notification, Receipt, ReportPull, Verification

N, E, R = Notification.__table__, Event.__table__, Receipt.__table__
P, V = ReportPull.__table__, Verification.__table__
OLD = time.time()
NOW = OLD + 91 * DAY
RETENTION = 90


@pytest.fixture
def store(database_url: str) -> NotificationStore:
    ensure_schema(database_url)
    return NotificationStore(Database(database_url))


def notification(store: NotificationStore, at: float, *path: Status, ref: str = "") -> int:
    """A notification made at ``at`` and moved along ``path`` a second apart."""
    (made,) = store.insert([NewNotification(provider="ihuyi", to="+8613800138000")], now=at)
    for step, status in enumerate(path, 1):
        row = store.get(made.id)
        values = {"provider_ref": ref} if ref and status is Status.SENT else {}
        assert store.transition(
            [Change(made.id, status, Expect.row(row), values=values)], now=at + step
        )
    return made.id


def side_records(db: Database, nid: int, at: float, tag: str) -> None:
    """A matched and an unmatched receipt, a report pull and a verification, at ``at``."""
    receipt = {"provider": "ihuyi", "delivered": True, "code": "DELIVRD", "received_at": at}
    with db.write() as conn:
        conn.execute(
            R.insert(),
            [
                {**receipt, "provider_ref": f"{tag}-1", "notification_id": nid, "applied_at": at},
                {
                    **receipt,
                    "provider_ref": f"{tag}-2",
                    "notification_id": None,
                    "applied_at": None,
                },
            ],
        )
        conn.execute(P.insert(), [{"provider": "apispace-voice", "pulled_at": at, "body": "[]"}])
        conn.execute(
            V.insert(),
            [
                {
                    "to": "+8613800138000",
                    "purpose": tag,
                    "channel": "sms",
                    "provider": "ihuyi",
                    "salt": "s",
                    "code_hmac": "h",
                    "length": 6,
                    "status": "approved",
                    "max_attempts": 5,
                    "notification_id": nid,
                    "expires_at": at + 300,
                    "created_at": at,
                    "updated_at": at,
                }
            ],
        )


def counts(db: Database) -> dict[str, Any]:
    with db.read() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in (("n", N), ("e", E), ("r", R), ("p", P), ("v", V))
        }


DELIVERED = (Status.SENDING, Status.SENT, Status.DELIVERED)


def test_what_ended_before_the_retention_goes_and_the_rest_stays(store: NotificationStore) -> None:
    db = store.db
    old = [notification(store, OLD, *DELIVERED, ref=f"old-{i}") for i in range(5)]
    failed = notification(store, OLD, Status.SENDING, Status.FAILED)
    open_old = notification(store, OLD, Status.SENDING, Status.SENT, ref="still")  # on its way
    side_records(db, old[0], OLD, "old")
    recent = notification(store, NOW - DAY, *DELIVERED, ref="recent")
    side_records(db, recent, NOW - DAY, "recent")
    before = counts(db)

    retention = Retention(db, batch=2)  # several batches, each its own transaction
    would = retention.count(NOW, RETENTION)
    assert (would.notifications, would.receipts, would.report_pulls, would.verifications) == (
        6,
        2,
        1,
        1,
    )
    assert would.events == 17  # three events each for five, two for the failed one
    assert counts(db) == before  # a dry run changes nothing

    pruned = retention.prune(NOW, RETENTION)
    assert (pruned.notifications, pruned.receipts, pruned.report_pulls) == (6, 2, 1)
    assert pruned.verifications == 1 and pruned.complete
    with db.read() as conn:
        left = set(conn.execute(select(N.c.id)).scalars())
        assert left == {open_old, recent}
        kept_events = set(conn.execute(select(E.c.notification_id)).scalars())
        assert conn.execute(select(R.c.provider_ref)).scalars().all() == ["recent-1", "recent-2"]
        assert conn.execute(select(P.c.pulled_at)).scalars().all() == [NOW - DAY]
        assert conn.execute(select(V.c.purpose)).scalars().all() == ["recent"]
    assert failed not in left and not set(old) & left
    if db.is_sqlite:
        assert kept_events == {open_old, recent}
        assert pruned.partitions == []
    else:
        # the old day's partition went whole, with the open row's old events in it (a
        # notification open past the retention keeps its row, not its old history)
        today = f"events_{time.strftime('%Y%m%d', time.gmtime(OLD))}"
        assert today in pruned.partitions and pruned.partition_events >= 17
        with db.read() as conn:
            assert conn.execute(text("SELECT to_regclass(:n)"), {"n": today}).scalar() is None
        assert kept_events == {recent}
    assert retention.prune(NOW, RETENTION).notifications == 0  # nothing left to do


def test_a_run_stops_at_its_bound_and_the_next_one_goes_on(store: NotificationStore) -> None:
    for _ in range(5):
        notification(store, OLD, Status.CANCELLED)
    retention = Retention(store.db, batch=2, most=2)
    first = retention.prune(NOW, RETENTION)
    assert (first.notifications, first.complete) == (2, False)
    while not retention.prune(NOW, RETENTION).complete:
        pass
    assert counts(store.db)["n"] == 0
