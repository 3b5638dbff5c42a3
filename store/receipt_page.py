"""A page of receipts written set-based: staged in a temporary table, then looked up,
stored and applied by a few statements over it.

A report page holds a thousand receipts. What stays per receipt in Python is its row
to stage and one row back for each notification that moved; the look-up of the
notifications the page names, the insert of the new receipts, the compare-and-set of
the notifications and their events are statements over the staged rows, with a text
that is the same for every page. Bound ``IN`` lists of a thousand values, a row object
per result row, a JSON serializer per receipt and per event, and a Python tuple per
move were most of a page's cost (``bench/reports.py``, cProfile and py-spy).

PostgreSQL: the page is staged by ``COPY`` (psycopg 3) and stored, applied and its
events written by one data-modifying ``WITH`` statement (:func:`store`). SQLite, which
has no data-modifying ``WITH``: the page is staged as one JSON parameter unpacked by
``json_each`` (one encoder call for the page, details included, where ``executemany``
took a serializer call per row), then four statements read it (:func:`store_sqlite`).

Both tables are the connection's own (``TEMPORARY``): another connection never sees
them, and on PostgreSQL their rows go at commit. Each page empties them first, so rows
a failed page left behind are never read as its successor's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Integer,
    MetaData,
    Result,
    String,
    Table,
    text,
)
from sqlalchemy.schema import CreateTable

from store.schema import Id
from store.status import Status

#: the statuses a receipt may move: ``sent``, and ``unknown`` (a repair)
AWAITING = (Status.SENT, Status.UNKNOWN)

#: a page row: (reference, delivered, code, message, detail as a JSON-able mapping)
PageRow = tuple[str, bool, str | None, str | None, Any]

#: one encoder for every page: ``json.dumps`` with any option builds a new one per call
_to_json = json.JSONEncoder(ensure_ascii=False).encode

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
MOVES = Table(
    "receipt_moves",
    _temporary,
    Column("nid", Id, primary_key=True),
    Column("source", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("to_status", String(16), nullable=False),
    Column("reason", String(255)),
    Column("detail", JSON),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)

_AWAITING_SQL = ", ".join(f"'{s.value}'" for s in AWAITING)  # our constants, not input
_DELIVERED, _UNDELIVERED, _UNKNOWN = (
    Status.DELIVERED.value,
    Status.UNDELIVERED.value,
    Status.UNKNOWN.value,
)


def _to_status(row: str) -> str:
    """The status a receipt (a named row with ``delivered``) asks for, in SQL."""
    return f"CASE WHEN {row}.delivered THEN '{_DELIVERED}' ELSE '{_UNDELIVERED}' END"


def _reason(row: str, source: str) -> str:
    """The reason ``store.receipts._outcome`` gives a receipt's move from ``source``,
    in SQL (a repair says so)."""
    plain = (
        f"CASE WHEN {row}.delivered THEN NULL ELSE 'receipt:' || coalesce({row}.code, 'None') END"
    )
    return (
        f"CASE WHEN {source} = '{_UNKNOWN}' THEN 'repaired: ' ||"
        f" coalesce({plain}, 'receipt:delivered') || ' after unknown' ELSE {plain} END"
    )


def _detail(row: str, source: str, json_object: str) -> str:
    """The event's detail ``store.receipts._detail`` writes, in SQL: the provider's code
    and words (and, for a repair, the status it repaired)."""
    words = f"'code', {row}.code, 'message', {row}.message"
    return (
        f"CASE WHEN {source} = '{_UNKNOWN}' THEN {json_object}({words}, 'repaired', '{_UNKNOWN}')"
        f" ELSE {json_object}({words}) END"
    )


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
#: The receipts are inserted in reference order: two pages stored at once that share
#: references wait on each other's inserts in one order, never in a circle
#: (``tasks.reports`` stores two pages at once).
_STORE = text(
    "WITH named AS (SELECT p.ref, p.delivered, p.code, p.message, p.detail,"  # noqa: S608
    " n.id AS nid, n.status AS source, n.version FROM receipt_page p LEFT JOIN LATERAL"
    " (SELECT id, status, version FROM notifications WHERE provider = :provider"
    f" AND provider_ref = p.ref AND coalesce(status, '') IN ({_AWAITING_SQL}) OFFSET 0) n ON true),"
    " ins AS (INSERT INTO receipts (provider, provider_ref, delivered, code, message, detail,"
    " received_at, applied_at, notification_id)"
    " SELECT :provider, ref, delivered, code, message, detail, :now,"
    " CASE WHEN nid IS NULL THEN NULL ELSE :now END, nid FROM named ORDER BY ref"
    " ON CONFLICT (provider, provider_ref) DO NOTHING RETURNING provider_ref),"
    f" moved AS (UPDATE notifications SET status = {_to_status('m')},"
    f" reason = {_reason('m', 'm.source')},"
    " updated_at = :now, next_attempt_at = NULL, version = notifications.version + 1"
    " FROM named m JOIN ins ON ins.provider_ref = m.ref"
    " WHERE notifications.id = ANY(ARRAY(SELECT nid FROM named WHERE nid IS NOT NULL))"
    " AND notifications.id = m.nid AND notifications.status = m.source"
    " AND notifications.version = m.version"
    " RETURNING notifications.id, notifications.version, m.source, notifications.status,"
    " notifications.reason, m.code, m.message),"
    " ev AS (INSERT INTO events (notification_id, at, from_status, to_status, reason, detail)"
    f" SELECT id, :now, source, status, reason, {_detail('moved', 'source', 'json_build_object')}"
    " FROM moved)"
    " SELECT id, version, source, status, NULL AS ref FROM moved"
    " UNION ALL SELECT NULL, NULL, NULL, NULL, m.ref FROM named m"
    " WHERE m.nid IS NOT NULL AND NOT EXISTS"
    " (SELECT 1 FROM ins WHERE ins.provider_ref = m.ref)"
)

#: PostgreSQL: the page's rows out of its JSON into the connection's page table
_STAGE_PG = text(
    "INSERT INTO receipt_page (ref, delivered, code, message, detail)"
    " SELECT ref, delivered, code, message, detail FROM json_to_recordset(CAST(:page AS json))"
    " AS p(ref text, delivered boolean, code text, message text, detail json)"
)
#: SQLite: the same (a JSON null detail is SQL NULL on both)
_STAGE_SQLITE = text(
    "INSERT INTO receipt_page (ref, delivered, code, message, detail)"
    " SELECT json_extract(value, '$.ref'), json_extract(value, '$.delivered'),"
    " json_extract(value, '$.code'), json_extract(value, '$.message'),"
    " json_extract(value, '$.detail') FROM json_each(:page)"
)
#: SQLite: a notification the page names and a receipt may move. ``CROSS JOIN`` keeps
#: the page the outer loop and each reference a probe of the (provider, provider_ref)
#: index; the status test is written so that no index serves it
#: (``store.notifications.unindexed`` says why)
_NAMED_SQLITE = (
    "receipt_page p CROSS JOIN notifications n WHERE n.provider = :provider"
    f" AND n.provider_ref = p.ref AND coalesce(n.status, '') IN ({_AWAITING_SQL})"
)
_STORED = "SELECT 1 FROM receipts r WHERE r.provider = :provider AND r.provider_ref = p.ref"
#: SQLite: the move each new receipt asks for, planned against the status and version
#: read (SQLite's writers are serialised, so nothing changes them before the update;
#: the update checks them anyway). A receipt stored before is not planned here.
_PLAN_SQLITE = text(
    "INSERT INTO receipt_moves (nid, source, version, to_status, reason, detail)"  # noqa: S608
    f" SELECT n.id, n.status, n.version, {_to_status('p')}, {_reason('p', 'n.status')},"
    f" {_detail('p', 'n.status', 'json_object')} FROM {_NAMED_SQLITE}"
    f" AND NOT EXISTS ({_STORED})"
)
#: SQLite: the page's references whose receipt was stored before (to apply as stored)
_STORED_BEFORE_SQLITE = text(f"SELECT p.ref FROM receipt_page p WHERE EXISTS ({_STORED})")  # noqa: S608
#: SQLite: the page's receipts not stored before, each applied to the notification it
#: names (if any); a repeat is skipped by the unique key
_INSERT_SQLITE = text(
    "INSERT INTO receipts (provider, provider_ref, delivered, code, message, detail,"  # noqa: S608
    " received_at, applied_at, notification_id)"
    " SELECT :provider, p.ref, p.delivered, p.code, p.message, p.detail, :now,"
    " CASE WHEN n.id IS NULL THEN NULL ELSE :now END, n.id FROM receipt_page p"
    " LEFT JOIN notifications n ON n.provider = :provider AND n.provider_ref = p.ref"
    f" AND coalesce(n.status, '') IN ({_AWAITING_SQL})"
    " WHERE true"  # SQLite: an INSERT … SELECT's ON CONFLICT needs a WHERE before it
    " ON CONFLICT (provider, provider_ref) DO NOTHING"
)
#: SQLite: the compare-and-set, a notification moved only if it is still at the status
#: and version read. ``UPDATE … FROM`` would read every notification: the ids come from
#: the planned moves, each checked against its own. What it returns is what moved.
_MOVE_SQLITE = text(
    "UPDATE notifications SET (status, reason) ="
    " (SELECT m.to_status, m.reason FROM receipt_moves m WHERE m.nid = notifications.id),"
    " updated_at = :now, next_attempt_at = NULL, version = version + 1"
    " WHERE id IN (SELECT nid FROM receipt_moves)"
    " AND (status, version) ="
    " (SELECT m.source, m.version FROM receipt_moves m WHERE m.nid = notifications.id)"
    " RETURNING id, version, status,"
    " (SELECT m.source FROM receipt_moves m WHERE m.nid = notifications.id)"
)
#: SQLite: an event for each notification the compare-and-set moved (ids as JSON)
_EVENTS_SQLITE = text(
    "INSERT INTO events (notification_id, at, from_status, to_status, reason, detail)"
    " SELECT m.nid, :now, m.source, m.to_status, m.reason, m.detail FROM receipt_moves m"
    " WHERE m.nid IN (SELECT value FROM json_each(:moved))"
)


class Stored(NamedTuple):
    """What :func:`store` or :func:`store_sqlite` did with a page."""

    #: (id, new version, source status, new status) of each notification moved
    moved: list[tuple[int, int, str, str]]
    #: references whose receipt was stored before: applied as stored
    #: (``store.receipts``) if still pending
    stored_before: list[str]
    #: the moves planned, where the store plans them apart from the update (SQLite)
    planned: int | None = None


def page_json(rows: Sequence[PageRow]) -> str:
    """The page as one JSON array of rows, each an object by column, encoded by one
    call (a row's detail a JSON-able mapping or None).

    orjson: 0.5 ms a page of a thousand, where the standard library's C encoder took
    2.5 ms, a fifth of the client's CPU under the GIL on PostgreSQL (py-spy ``--gil``).
    What it cannot encode (a detail that is a Mapping but not a dict, a key that is not
    text) goes to the standard encoder, which says what it refuses."""
    objects = [
        {"ref": ref, "delivered": delivered, "code": code, "message": message, "detail": detail}
        for ref, delivered, code, message, detail in rows
    ]
    try:
        return orjson.dumps(objects).decode()
    except TypeError:
        for row in objects:
            row["detail"] = None if row["detail"] is None else dict(row["detail"])
        return _to_json(objects)


def store(conn: Connection, provider: str, rows: Sequence[PageRow], now: float) -> Stored:
    """PostgreSQL: the page staged, then stored, its notifications moved and their
    events written by one statement (:data:`_STORE`)."""
    _empty(conn, PAGE)
    conn.execute(_STAGE_PG, {"page": page_json(rows)})
    moved: list[tuple[int, int, str, str]] = []
    stored_before: list[str] = []
    for nid, version, source, status, ref in _all(
        conn.execute(_STORE, {"provider": provider, "now": now})
    ):
        if nid is None:
            stored_before.append(ref)
        else:
            moved.append((nid, version, source, status))
    return Stored(moved, stored_before)


def store_sqlite(conn: Connection, provider: str, rows: Sequence[PageRow], now: float) -> Stored:
    """SQLite: the page staged, its moves planned, its new receipts stored, the
    notifications moved by one compare-and-set and an event written for each that
    moved: six statements whatever the page's size."""
    _empty(conn, PAGE)
    _empty(conn, MOVES)
    named = {"provider": provider}
    conn.execute(_STAGE_SQLITE, {"page": page_json(rows)})
    planned = conn.execute(_PLAN_SQLITE, named).rowcount
    stored_before: list[str] = list(conn.execute(_STORED_BEFORE_SQLITE, named).scalars())
    conn.execute(_INSERT_SQLITE, {**named, "now": now})
    moved: list[tuple[int, int, str, str]] = [
        (nid, version, source, status)
        for nid, version, status, source in _all(conn.execute(_MOVE_SQLITE, {"now": now}))
    ]
    if moved:
        ids = "[" + ",".join([str(row[0]) for row in moved]) + "]"
        conn.execute(_EVENTS_SQLITE, {"now": now, "moved": ids})
    return Stored(moved, stored_before, planned)


def _all(result: Result[Any]) -> list[Any]:
    """A result's rows at once (``fetchall``: not a ``fetchone`` per row, as iterating
    does), typed for unpacking into names."""
    return list(result.all())


def _empty(conn: Connection, table: Table) -> None:
    """The connection's temporary ``table``, created if it has none yet, emptied."""
    conn.exec_driver_sql(_ddl(conn, table))
    conn.exec_driver_sql(f'DELETE FROM "{table.name}"')  # noqa: S608


_DDL: dict[tuple[str, str], str] = {}


def _ddl(conn: Connection, table: Table) -> str:
    """``CREATE TEMPORARY TABLE IF NOT EXISTS`` for this store, compiled once: run before
    every page, as a rolled-back transaction takes a table it created with it."""
    key = (conn.dialect.name, table.name)
    if key not in _DDL:
        _DDL[key] = str(CreateTable(table, if_not_exists=True).compile(dialect=conn.dialect))
    return _DDL[key]
