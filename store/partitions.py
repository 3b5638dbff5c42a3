"""PostgreSQL's ``events`` partitioned by day, so that what is older than the retention is
dropped whole: a ``DROP TABLE`` of a day's partition, not millions of row deletes, and
no bloat left for vacuum to chase.

Partitions are ranges of ``at`` (epoch seconds, UTC days): ``events_YYYYMMDD`` holds one
day; ``events_before_YYYYMMDD`` everything before that day (what the table held when it
was partitioned); ``events_default`` whatever falls outside them (a clock far ahead,
days nobody prepared), so an event is never refused for want of a partition. Beat makes
the coming days' partitions (:func:`ensure_ahead`) before they are needed; a day the
default already holds events of is left there (a partition cannot be made over rows
the default holds), and those go row by row with their notifications.

Every DDL here runs with a short ``lock_timeout``: creating or dropping a partition
briefly locks the parent table, and waiting behind a long transaction would queue every
writer behind it; a statement that cannot have its lock in time is left for the next run.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from store.db import Database

log = logging.getLogger(__name__)

DAY = 86400
#: how many days ahead partitions are made
AHEAD = 7
LOCK_TIMEOUT = "2s"
_NAME = re.compile(r"^events_(before_)?(\d{8})$")


def day_of(moment: float) -> date:
    return datetime.fromtimestamp(moment, UTC).date()


def start_of(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def name_of(day: date) -> str:
    return f"events_{day:%Y%m%d}"


def create_day(conn: Connection, day: date) -> None:
    """The partition of ``day`` (nothing if it exists)."""
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {name_of(day)} PARTITION OF events "
            f"FOR VALUES FROM ({start_of(day)}) TO ({start_of(day + timedelta(days=1))})"
        )
    )


def ensure_ahead(db: Database, now: float, days: int = AHEAD) -> list[str]:
    """Partitions for the day of ``now`` and the ``days`` after it; the names made."""
    made = []
    existing = set(_partitions(db))
    first = day_of(now)
    for offset in range(days + 1):
        day = first + timedelta(days=offset)
        if name_of(day) in existing:
            continue
        try:
            with db.write() as conn:
                _short_locks(conn)
                held = conn.execute(
                    text("SELECT 1 FROM events_default WHERE at >= :lo AND at < :hi LIMIT 1"),
                    {"lo": start_of(day), "hi": start_of(day + timedelta(days=1))},
                ).first()
                if held:
                    continue
                create_day(conn, day)
            made.append(name_of(day))
        except OperationalError as exc:
            log.warning("events partition %s not made now (%s): next run", name_of(day), exc.orig)
    return made


def older(conn: Connection, cutoff: float) -> tuple[list[str], int]:
    """The partitions wholly before ``cutoff`` and about how many events they hold (the
    planner's estimate: a count would read them all)."""
    names = [name for name, upper in _bounds(conn) if upper <= cutoff]
    if not names:
        return [], 0
    estimate: float = conn.execute(
        text(
            "SELECT COALESCE(SUM(GREATEST(reltuples, 0)), 0) FROM pg_class WHERE relname = ANY(:n)"
        ),
        {"n": names},
    ).scalar_one()
    return names, int(estimate)


def drop_older(db: Database, cutoff: float) -> tuple[list[str], int]:
    """Drop the partitions wholly before ``cutoff``, each in its own short transaction;
    the names dropped and the events they held."""
    with db.read() as conn:
        names = [name for name, upper in _bounds(conn) if upper <= cutoff]
    dropped, events = [], 0
    for name in names:
        try:
            with db.write() as conn:
                _short_locks(conn)
                # a name of ours (matched by _NAME), never a value from outside
                held: int = conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()  # noqa: S608
                conn.execute(text(f"DROP TABLE {name}"))
            dropped.append(name)
            events += held
        except OperationalError as exc:
            log.warning("events partition %s not dropped now (%s): next run", name, exc.orig)
    return dropped, events


def _short_locks(conn: Connection) -> None:
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


def _partitions(db: Database) -> list[str]:
    with db.read() as conn:
        return [name for name, _ in _bounds(conn)]


def _bounds(conn: Connection) -> list[tuple[str, float]]:
    """Each partition of ours and the moment its range ends."""
    rows: Iterable[str] = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        )
    ).scalars()
    out = []
    for name in rows:
        match = _NAME.match(name)
        if not match:
            continue
        day = datetime.strptime(match[2], "%Y%m%d").replace(tzinfo=UTC).date()
        out.append((name, start_of(day) if match[1] else start_of(day + timedelta(days=1))))
    return out
