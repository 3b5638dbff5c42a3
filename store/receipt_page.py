"""A batch of receipts written set-based: staged in a temporary table, then looked up,
stored and applied by a few statements over it.

A report page holds a thousand receipts. What stays per receipt in Python is one tuple
to stage (``COPY`` on PostgreSQL through psycopg 3, ``executemany`` on SQLite) and, on
SQLite, one for each notification it moves; the look-up of the notifications the page names, the
insert of the new receipts and the compare-and-set of the notifications are one
statement each over the staged rows, with a text that is the same for every page.
Bound ``IN`` lists of a thousand values, a row object per result row and a JSON
serializer per event were most of a page's cost (``bench/reports.py``, cProfile).
On PostgreSQL those statements and the events' insert are one (:func:`store`), a
data-modifying ``WITH`` that SQLite does not have.

Both tables are the connection's own (``TEMPORARY``): another connection never sees
them, and on PostgreSQL their rows go at commit. Each batch empties them first, so
rows a failed batch left behind are never read as its successor's.
"""

from __future__ import annotations

from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    text,
)
from sqlalchemy.schema import CreateTable

from store.bulk import Serialized, insert_rows, tuples
from store.schema import Id
from store.status import Status

#: the statuses a receipt may move: ``sent``, and ``unknown`` (a repair)
AWAITING = (Status.SENT, Status.UNKNOWN)

_temporary = MetaData()  # never migrated: each connection creates its own
PAGE = Table(
    "receipt_page",
    _temporary,
    Column("ref", String(64), primary_key=True),
    Column("delivered", Boolean, nullable=False),
    Column("code", String(32)),
    Column("message", String(255)),
    Column("detail", JSON),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)
PAGE_COLUMNS = ("ref", "delivered", "code", "message", "detail")
MOVES = Table(
    "receipt_moves",
    _temporary,
    Column("nid", Id, primary_key=True),
    Column("source", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("to_status", String(16), nullable=False),
    Column("reason", String(255)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)
MOVE_COLUMNS = ("nid", "source", "version", "to_status", "reason")

_AWAITING_SQL = ", ".join(f"'{s.value}'" for s in AWAITING)  # our constants, not input
#: a notification the staged reference names and a receipt may move; its status test
#: is written so that no index serves it (``store.notifications.unindexed`` says why)
_NAMED = (
    "notifications n ON n.provider = :provider AND n.provider_ref = p.ref"
    f" AND coalesce(n.status, '') IN ({_AWAITING_SQL})"
)
#: a LEFT JOIN (its unmatched rows dropped by the caller): SQLite then reads the page
#: first and each reference by the (provider, provider_ref) index, where as a JOIN it
#: reads every notification of the provider and looks each up in the page
_READ = text(f"SELECT p.ref, n.id, n.status, n.version FROM receipt_page p LEFT JOIN {_NAMED}")  # noqa: S608
#: the staged receipts not stored before, applied to the notification they name (if
#: any); a repeat, or a row another writer stored first, is skipped by the unique key
_INSERT = text(
    "INSERT INTO receipts (provider, provider_ref, delivered, code, message, detail,"  # noqa: S608
    " received_at, applied_at, notification_id)"
    " SELECT :provider, p.ref, p.delivered, p.code, p.message, p.detail, :now,"
    " CASE WHEN n.id IS NULL THEN NULL ELSE :now END, n.id"
    f" FROM receipt_page p LEFT JOIN {_NAMED}"
    " WHERE true"  # SQLite: an INSERT … SELECT's ON CONFLICT needs a WHERE before it
    " ON CONFLICT (provider, provider_ref) DO NOTHING"
    " RETURNING provider_ref"
)
#: the compare-and-set: a notification moves only if it is still at the status and
#: version read; what it returns is what moved
_MOVE = text(
    "UPDATE notifications SET status = m.to_status, reason = m.reason,"
    " updated_at = :now, next_attempt_at = NULL, version = notifications.version + 1"
    " FROM receipt_moves m"
    " WHERE notifications.id = m.nid AND notifications.status = m.source"
    " AND notifications.version = m.version"
    " RETURNING notifications.id, notifications.version"
)
#: the same on SQLite, which would drive ``UPDATE … FROM`` by reading every
#: notification: the ids come from the staged moves, each checked against its own
_MOVE_SQLITE = text(
    "UPDATE notifications SET (status, reason) ="
    " (SELECT m.to_status, m.reason FROM receipt_moves m WHERE m.nid = notifications.id),"
    " updated_at = :now, next_attempt_at = NULL, version = version + 1"
    " WHERE id IN (SELECT nid FROM receipt_moves)"
    " AND (status, version) ="
    " (SELECT m.source, m.version FROM receipt_moves m WHERE m.nid = notifications.id)"
    " RETURNING id, version"
)


_DELIVERED, _UNDELIVERED, _UNKNOWN = (
    Status.DELIVERED.value,
    Status.UNDELIVERED.value,
    Status.UNKNOWN.value,
)
#: the reason ``store.receipts`` gives a receipt's move, in SQL over a named row ``m``
_REASON = "CASE WHEN m.delivered THEN NULL ELSE 'receipt:' || coalesce(m.code, 'None') END"
#: PostgreSQL: the page stored, applied and reported by one statement. The receipts
#: not stored before are inserted; the notifications they name are moved by a
#: compare-and-set against the status and version the statement's own snapshot read
#: (a row another writer changed meanwhile is rechecked on its newest version, fails
#: the test and stays); each moved row gets its event from the update's own
#: ``RETURNING``. One round trip a page, where reading, staging the moves, updating and
#: copying the events were four, with a row each way in Python (``bench/reports.py``).
#: What comes back: a moved row (id, new version, source status, new status), or a
#: reference whose receipt was stored before (id NULL), applied as it was stored.
#: Two fences keep each look-up on its index, one probe a staged row: the lateral
#: sub-select's ``OFFSET 0`` (flattened, it becomes a hash of every ``sent`` row of
#: the provider, rebuilt for each page), and the update's ``id = ANY(ARRAY(…))``
#: (without it, a scan of every notification): together most of a page's time.
_STORE = text(
    "WITH named AS (SELECT p.ref, p.delivered, p.code, p.message, p.detail,"  # noqa: S608
    " n.id AS nid, n.status AS source, n.version FROM receipt_page p LEFT JOIN LATERAL"
    " (SELECT id, status, version FROM notifications WHERE provider = :provider"
    f" AND provider_ref = p.ref AND coalesce(status, '') IN ({_AWAITING_SQL}) OFFSET 0) n ON true),"
    " ins AS (INSERT INTO receipts (provider, provider_ref, delivered, code, message, detail,"
    " received_at, applied_at, notification_id)"
    " SELECT :provider, ref, delivered, code, message, detail, :now,"
    " CASE WHEN nid IS NULL THEN NULL ELSE :now END, nid FROM named"
    " ON CONFLICT (provider, provider_ref) DO NOTHING RETURNING provider_ref),"
    " moved AS (UPDATE notifications SET"
    f" status = CASE WHEN m.delivered THEN '{_DELIVERED}' ELSE '{_UNDELIVERED}' END,"
    f" reason = CASE WHEN m.source = '{_UNKNOWN}' THEN 'repaired: ' ||"
    f" coalesce({_REASON}, 'receipt:delivered') || ' after unknown' ELSE {_REASON} END,"
    " updated_at = :now, next_attempt_at = NULL, version = notifications.version + 1"
    " FROM named m JOIN ins ON ins.provider_ref = m.ref"
    " WHERE notifications.id = ANY(ARRAY(SELECT nid FROM named WHERE nid IS NOT NULL))"
    " AND notifications.id = m.nid AND notifications.status = m.source"
    " AND notifications.version = m.version"
    " RETURNING notifications.id, notifications.version, m.source, notifications.status,"
    " notifications.reason, m.code, m.message),"
    " ev AS (INSERT INTO events (notification_id, at, from_status, to_status, reason, detail)"
    " SELECT id, :now, source, status, reason, CASE WHEN source = "
    f"'{_UNKNOWN}' THEN json_build_object('code', code, 'message', message, 'repaired',"
    f" '{_UNKNOWN}') ELSE json_build_object('code', code, 'message', message) END"
    " FROM moved)"
    " SELECT id, version, source, status, NULL AS ref FROM moved"
    " UNION ALL SELECT NULL, NULL, NULL, NULL, m.ref FROM named m"
    " WHERE m.nid IS NOT NULL AND NOT EXISTS"
    " (SELECT 1 FROM ins WHERE ins.provider_ref = m.ref)"
)


class Stored(NamedTuple):
    """What :func:`store` did with a staged page."""

    #: (id, new version, source status, new status) of each notification moved
    moved: list[tuple[int, int, str, str]]
    #: the references that name a movable notification but whose receipt was stored
    #: before: applied as stored (``store.receipts``)
    stored_before: list[str]


def store(conn: Connection, provider: str, now: float) -> Stored:
    """PostgreSQL: the staged page stored, its notifications moved and their events
    written, by one statement (:data:`_STORE`)."""
    moved: list[tuple[int, int, str, str]] = []
    stored_before: list[str] = []
    for nid, version, source, status, ref in tuples(
        conn.execute(_STORE, {"provider": provider, "now": now})
    ):
        if nid is None:
            stored_before.append(ref)
        else:
            moved.append((nid, version, source, status))
    return Stored(moved, stored_before)


class Found(NamedTuple):
    """A notification a staged receipt names, as read: what the move expects."""

    ref: str
    nid: int
    status: str
    version: int


class Move(NamedTuple):
    """A notification to move: from ``source`` at ``version`` to ``to`` (with ``reason``)."""

    nid: int
    source: str
    version: int
    to: str
    reason: str | None


def stage(conn: Connection, table: Table, columns: Sequence[str], rows: list[Any]) -> None:
    """``rows`` (tuples in ``columns`` order, JSON as :class:`Serialized`) into the
    connection's temporary ``table``, created if this connection has none yet and
    emptied first."""
    conn.exec_driver_sql(_ddl(conn, table))
    conn.exec_driver_sql(f'DELETE FROM "{table.name}"')  # noqa: S608
    insert_rows(conn, table, columns, rows, prepared=True)


def found(conn: Connection, provider: str) -> list[Found]:
    """The notifications the staged page names that a receipt may still move."""
    rows = tuples(conn.execute(_READ, {"provider": provider}))
    return [Found(*row) for row in rows if row[1] is not None]


def insert_new(conn: Connection, provider: str, now: float) -> set[str]:
    """Store the staged receipts not stored before; the references stored."""
    return set(conn.execute(_INSERT, {"provider": provider, "now": now}).scalars())


def move(conn: Connection, moves: Sequence[Move], now: float) -> dict[int, int]:
    """Apply ``moves`` (at most one per notification), each only if its notification is
    still at the status and version read; moved id → its new version."""
    if not moves:
        return {}
    stage(conn, MOVES, MOVE_COLUMNS, list(moves))
    statement = _MOVE_SQLITE if conn.dialect.name == "sqlite" else _MOVE
    return dict(tuples(conn.execute(statement, {"now": now})))


def detail_json(code: str | None, message: str | None, repaired: bool) -> Serialized:
    """A receipt's event detail, ``{"code", "message"}`` (and ``"repaired"``), as the
    JSON encoder would write it, without a call into it per event."""
    words = '{"code": ' + _string(code) + ', "message": ' + _string(message)
    if repaired:
        words += ', "repaired": "' + Status.UNKNOWN.value + '"'
    return Serialized(words + "}")


def _string(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


_DDL: dict[tuple[str, str], str] = {}


def _ddl(conn: Connection, table: Table) -> str:
    """``CREATE TEMPORARY TABLE IF NOT EXISTS`` for this store, compiled once: run before
    every batch, as a rolled-back transaction takes a table it created with it."""
    key = (conn.dialect.name, table.name)
    if key not in _DDL:
        _DDL[key] = str(CreateTable(table, if_not_exists=True).compile(dialect=conn.dialect))
    return _DDL[key]
