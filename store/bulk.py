"""Many rows into one table through the driver's own ``executemany``.

SQLAlchemy's executemany runs every row's parameters through its type processors in
Python (a JSON column's serializer, an enum's check, the dict it builds per row): for
the hot bulk writes — a report page's receipts and their events, a campaign's
notifications — that was most of the write's cost (``bench/reports.py``,
``bench/campaign.py``). Here a row becomes a tuple once, JSON columns are serialized
once, and the driver binds them.

On PostgreSQL through psycopg 3, a large insert without a conflict clause goes through
``COPY … FROM STDIN`` instead (``cursor.copy``): one statement streaming every row, where
``executemany`` runs an INSERT per row on the server — a million campaign rows took
~75 s that way against ~20 s on SQLite (``bench/campaign.py``). COPY runs on the
transaction's own connection, inside its transaction: a failed COPY (or anything after
it in the block) rolls back with the rest, so what was all-or-nothing stays so.
SQLite, other drivers and small inserts (under :data:`COPY_MIN` rows, where an INSERT
is as cheap and counted like any statement) keep ``executemany``.

Only for inserts whose values are all ours: column names come from the table, never
from input, and every value is bound (or streamed as data), never spliced.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Enum,
    Row,
    Select,
    Table,
    any_,
    bindparam,
    func,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY

from store import copy_text

#: values per ``IN (…)`` list: SQLite before 3.32 binds at most 999 parameters a
#: statement, later ones 32,766 (PostgreSQL 65,535). Large enough for a report page of
#: a thousand to be one look-up, not two.
IN_LIST_LIMIT = 5000 if sqlite3.sqlite_version_info >= (3, 32) else 900


def tuples(result: Iterable[Row[Any]]) -> list[tuple[Any, ...]]:
    """A result's rows as plain tuples, to unpack into names: the type checker reads a
    ``Row``'s items as ``object``, a tuple's as what the statement selected."""
    return [tuple(row) for row in result]


def among(
    conn: Connection, column: ColumnElement[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:values)``, the list bound
    as one array. A thousand-value ``IN`` list is a thousand placeholders that
    SQLAlchemy expands and psycopg re-parses on every call (its statement cache skips
    texts that long): on a report page that was most of the pull's CPU on PostgreSQL
    (``bench/reports.py``, py-spy). One array parameter keeps the text short and the
    same for every page; the planner uses the index for ``= ANY`` as for ``IN``."""
    if conn.dialect.name != "postgresql":
        return column.in_(list(values))
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))


def probed(
    conn: Connection,
    columns: Sequence[ColumnElement[Any]],
    key: ColumnElement[Any],
    values: Sequence[Any],
    *conditions: ColumnElement[bool],
) -> Select[Any]:
    """``SELECT columns WHERE key IN (values) AND conditions``, each value one index
    probe on PostgreSQL whatever the planner believes.

    A store's tables are young before autovacuum first analyzes them (a new store's
    first minute, or the minute after a large import): without statistics the planner
    takes ``provider = 'ihuyi' AND provider_ref = ANY(…)`` for one row either way and
    keeps only the provider as the index's condition, so every receipt of the provider
    is read for each batch, more as the table grows. Here each value is looked up by a
    ``LATERAL`` subquery over ``unnest`` of the one array (``OFFSET 0`` keeps it apart),
    an equality on every column of the key's index."""
    if conn.dialect.name != "postgresql":
        return select(*columns).where(key.in_(list(values)), *conditions)
    # each value once: a value given twice must not find its rows twice, as IN would not
    array = bindparam(None, list(dict.fromkeys(values)), type_=ARRAY(key.type))
    given = func.unnest(array).table_valued("value").render_derived(name="given")
    each = select(*columns).where(key == given.c.value, *conditions).offset(0).lateral()
    return select(*each.c).select_from(given.join(each, true()))


#: rows from which a PostgreSQL (psycopg) insert without a conflict clause is a COPY
COPY_MIN = 100


#: one encoder for every row: ``json.dumps`` with any option builds a new one per call
_to_json = json.JSONEncoder(ensure_ascii=False).encode


class Serialized(str):
    """A JSON column's value already serialized (one text shared by many rows)."""


def json_strings(values: Sequence[str]) -> Serialized:
    """A list of strings as JSON, the very text the encoder above would write, without
    building an encoder per call (a campaign serializes a million rows' params)."""
    try:  # the C encoder refuses anything but text
        return Serialized("[" + ", ".join(map(encode_basestring, values)) + "]")
    except TypeError:
        return Serialized(_to_json(list(values)))


def insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any] | Mapping[str, Any]],
    *,
    skip_conflicts_on: Sequence[str] = (),
    prepared: bool = False,
) -> None:
    """Insert ``rows`` (tuples in ``columns`` order, or mappings by column name).

    JSON columns take Python values (serialized here; None is SQL NULL) or
    :class:`Serialized` text. ``prepared``: the rows are tuples whose values the driver
    takes as they are (JSON as :class:`Serialized` or None, enums as their values), so
    no row is looked at again.

    ``skip_conflicts_on`` names a unique key: a row that would repeat it is skipped
    (``ON CONFLICT (…) DO NOTHING``, on SQLite and PostgreSQL alike).
    """
    if not rows:
        return
    types = [table.c[c].type for c in columns]
    json_at = [i for i, kind in enumerate(types) if isinstance(kind, JSON)]
    enum_at = [i for i, kind in enumerate(types) if isinstance(kind, Enum)]
    if not skip_conflicts_on and len(rows) >= COPY_MIN and copies(conn):
        _copy(conn, table, columns, rows, () if prepared else json_at, () if prepared else enum_at)
        return
    qmark = conn.dialect.paramstyle == "qmark"
    marks = ", ".join(
        "?" if qmark else ("%s::json" if i in json_at else "%s") for i in range(len(columns))
    )
    names = ", ".join(f'"{c}"' for c in columns)
    conflict = (
        f" ON CONFLICT ({', '.join(skip_conflicts_on)}) DO NOTHING" if skip_conflicts_on else ""
    )
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks}){conflict}'  # noqa: S608
    if not prepared and (json_at or enum_at or not isinstance(rows[0], tuple)):
        rows = [_bindable(row, columns, json_at, enum_at) for row in rows]
    conn.exec_driver_sql(sql, rows)


def insert_shared(
    conn: Connection,
    table: Table,
    columns: Sequence[str | None],
    rows: Sequence[Sequence[Any]],
    shared: Mapping[str, Any],
) -> None:
    """Insert ``rows`` that differ in a few columns and share every other value.

    Each row is a tuple whose items fill ``columns`` in order (an item under None is
    left out): text, integers, None, or a list of strings for a JSON column. ``shared``
    gives the other columns' values, the same for every row.

    On SQLite the rows travel as one JSON array, unpacked by ``json_each`` in one
    ``INSERT … SELECT`` with the shared values bound once: ``executemany`` converts and
    binds every value of every row in Python, which was most of a campaign chunk's CPU
    beside the index updates (``bench/campaign.py``). A JSON column's value is stored
    as SQLite writes JSON (``["a","b"]``), which reads back the same. Elsewhere the rows
    become whole tuples for :func:`insert_rows` (``COPY`` on PostgreSQL)."""
    if not rows:
        return
    names = [c for c in columns if c is not None] + list(shared)
    if conn.dialect.name == "sqlite":
        picks = [f"json_extract(value, '$[{i}]')" for i, c in enumerate(columns) if c]
        marks = ", ".join(picks + ["?"] * len(shared))
        quoted = ", ".join(f'"{c}"' for c in names)
        sql = f'INSERT INTO "{table.name}" ({quoted}) SELECT {marks} FROM json_each(?)'  # noqa: S608
        conn.exec_driver_sql(sql, (*shared.values(), _to_json(rows)))
        return
    if len(rows) >= COPY_MIN and copies(conn):
        fields = [
            copy_text.json_list_column([row[i] for row in rows])
            if isinstance(table.c[name].type, JSON)
            else copy_text.text_column([row[i] for row in rows])
            for i, name in enumerate(columns)
            if name is not None
        ]
        _copy_text(conn, table, names, copy_text.payload(fields, shared.values()))
        return
    own = [i for i, c in enumerate(columns) if c is not None]
    pick = itemgetter(*own) if len(own) > 1 else (lambda row: (row[own[0]],))
    as_json = [k for k, i in enumerate(own) if isinstance(table.c[str(columns[i])].type, JSON)]
    tail = tuple(shared.values())
    whole: list[tuple[Any, ...]] = []
    for row in rows:
        values = list(pick(row))
        for k in as_json:
            values[k] = json_strings(values[k])
        whole.append((*values, *tail))
    insert_rows(conn, table, names, whole, prepared=True)


def copies(conn: Connection) -> bool:
    """Whether this connection's driver streams ``COPY … FROM STDIN`` (psycopg 3)."""
    return conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg"


def _copy(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any] | Mapping[str, Any]],
    json_at: Sequence[int],
    enum_at: Sequence[int],
) -> None:
    """``COPY`` of rows as tuples, or mappings by column name, each formatted by
    psycopg (text format: the server parses each value as its column's type, JSON
    included)."""
    plain = not (json_at or enum_at) and isinstance(rows[0], tuple)

    def feed(copy: Any) -> None:  # psycopg's Copy
        write = copy.write_row
        if plain:
            for row in rows:
                write(row)
        else:
            for row in rows:
                write(_bindable(row, columns, json_at, enum_at))

    _copy_in(conn, table, columns, feed)


def _copy_text(conn: Connection, table: Table, columns: Sequence[str], payload: str) -> None:
    """``COPY`` of rows already in COPY's text format (:mod:`store.copy_text`)."""
    _copy_in(conn, table, columns, lambda copy: copy.write(payload))


def _copy_in(
    conn: Connection, table: Table, columns: Sequence[str], feed: Callable[[Any], None]
) -> None:
    """``COPY table (columns) FROM STDIN`` on the transaction's own connection, its data
    written by ``feed``."""
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f'COPY "{table.name}" ({names}) FROM STDIN'
    cursor = conn.connection.cursor()  # the DB-API connection SQLAlchemy's transaction is on
    try:
        with cursor.copy(sql) as copy:
            feed(copy)
    finally:
        cursor.close()


def _bindable(
    row: Sequence[Any] | Mapping[str, Any],
    columns: Sequence[str],
    json_at: Sequence[int],
    enum_at: Sequence[int],
) -> tuple[Any, ...]:
    values = [row[c] for c in columns] if isinstance(row, Mapping) else list(row)
    for i in json_at:
        value = values[i]
        if value is not None and not isinstance(value, Serialized):
            values[i] = _to_json(value)
    for i in enum_at:
        if isinstance(values[i], enum.Enum):
            values[i] = values[i].value
    return tuple(values)
