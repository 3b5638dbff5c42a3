"""Whether the store is there: what an error that means "away" looks like, and a probe.

"Away" is the store not answering at all — refused, reset, shut down, a pool with no
connection to give, a SQLite file locked past its timeout — as opposed to a statement
the store answered with an error (a constraint, a bad value), which is a bug or bad
input and is never hidden. Callers answer "away" with 503 and ``Retry-After`` (the API),
with a journal (provider callbacks), or by waiting (report pulls), and log it once
(observe/outage.py).
"""

from __future__ import annotations

from sqlalchemy import exc, text

from store.db import Database, DatabaseUnavailable

#: SQLAlchemy's wrappers of a driver error that mean the connection, not the statement
_AWAY = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError)


def store_away(error: BaseException) -> bool:
    """Whether ``error`` (or an error it came from) says the store is not answering."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (*_AWAY, DatabaseUnavailable)):
            return True
        if isinstance(current, exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def probe_store(db: Database) -> None:
    """One round trip to the store; raises what it raises when it is away."""
    with db.read() as conn:
        conn.execute(text("SELECT 1"))
