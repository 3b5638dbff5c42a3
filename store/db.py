"""Engine set-up for the two stores we support, and the write transaction both share.

SQLite is the embedded default: WAL (readers never wait for the writer), a busy
timeout, ``synchronous=NORMAL`` (durable at each checkpoint, safe in WAL), and every
write transaction opened with ``BEGIN IMMEDIATE`` so it takes the write lock up front
instead of failing on the read-to-write upgrade. Within one process, writers queue on
a lock of ours before they queue inside SQLite: a thread pool of hundreds would
otherwise spin in SQLite's busy handler, whose back-off sleeps grow to 100 ms.

Across processes (two workers, the API, beat), writers queue on an ``flock`` of a file
beside the database before SQLite sees them: the kernel hands the lock over the moment
it is released, where SQLite's own busy handler polls with sleeps of up to 100 ms — the
difference between a write lock that is busy and one that is idle half the time
(``bench/dispatch.py``, one task per notification).

PostgreSQL is the production store: plain READ COMMITTED transactions; correctness
under concurrency comes from compare-and-set updates (see ``notifications.py``).

A pooled PostgreSQL connection is pinged before use only when it has been idle for
:data:`PING_AFTER_IDLE` seconds: a server restart or a failover closes connections
while they sit in the pool, and the ping finds that before a transaction does. One
used again within the second is not pinged — SQLAlchemy's ``pool_pre_ping`` pings on
every checkout, which cost one round trip of the four in each ``enqueue()`` and in
each of a worker's transactions (measured with py-spy on a loop of ``enqueue()``).
Should a server go away inside that second, the transaction fails as it would have
mid-flight anyway, and SQLAlchemy, seeing the disconnect, recycles the whole pool.

A SQLite file's folder is made when it is missing (a fresh checkout has no ``var/``): a
relative path is relative to the working directory, as SQLite reads it. Where the folder
cannot be made, or the database cannot be opened at all, :func:`opening` says which
database and why (:class:`DatabaseUnavailable`) instead of the driver's "unable to open
database file".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url

_WRITE = "notifyq_write"

#: seconds a pooled PostgreSQL connection may sit unused before it is pinged on checkout
PING_AFTER_IDLE = 1.0
#: seconds a new PostgreSQL connection may take (a URL's ``connect_timeout`` wins)
CONNECT_TIMEOUT = 10
#: rows SQLAlchemy puts in one multi-row ``INSERT`` (its insertmanyvalues page, set
#: here so that the store can rely on it: up to this many rows are one statement)
INSERT_PAGE = 1000


class DatabaseUnavailable(RuntimeError):
    """The database cannot be opened: ``where`` it is (a SQLite file's absolute path, or
    the URL without its password) and ``why``, in words a person can act on."""

    def __init__(self, where: str, why: str) -> None:
        self.where = where
        self.why = why
        super().__init__(f"cannot open the database {where}: {why}")


def sqlite_file(url: str | URL) -> Path | None:
    """The absolute path of a SQLite URL's file (None: in memory, or not SQLite)."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database).absolute()


def described(url: str | URL) -> str:
    """How an error names a database: its file, or its URL with the password hidden."""
    file = sqlite_file(url)
    return str(file) if file is not None else make_url(url).render_as_string(hide_password=True)


def make_sqlite_folder(url: str | URL) -> None:
    """Make the folder of a SQLite URL's file if it is missing."""
    file = sqlite_file(url)
    if file is None:
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseUnavailable(
            str(file), f"its folder cannot be made ({error.strerror or error})"
        ) from error


@contextlib.contextmanager
def opening(url: str | URL) -> Iterator[None]:
    """Around the first use of a database: its SQLite folder made if missing, and a
    failure to open or read it raised as :class:`DatabaseUnavailable`."""
    make_sqlite_folder(url)
    try:
        yield
    except exc.DBAPIError as error:
        reason = str(error.orig).strip().splitlines()
        raise DatabaseUnavailable(
            described(url), reason[0] if reason else type(error.orig).__name__
        ) from error


class Database:
    """One engine and the way to open read and write transactions on it."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 16,
        max_overflow: int = 64,
        ping_after_idle: float = PING_AFTER_IDLE,
    ) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, pool_size, max_overflow)
        else:
            self.engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=max_overflow,
                insertmanyvalues_page_size=INSERT_PAGE,
                connect_args=_connect_timeout(self.url),
            )
            _ping_when_idle(self.engine, ping_after_idle)
        self._thread_lock = threading.Lock()
        self._lock_path = _lock_file(self.url.database) if self.is_sqlite else None
        self._lock_fd: int | None = None
        self._lock_pid = 0

    @contextlib.contextmanager
    def _writer(self) -> Iterator[None]:
        """This process's threads one at a time, then one process at a time (SQLite only)."""
        if not self.is_sqlite:
            yield
            return
        with self._thread_lock:
            if self._lock_path is None:
                yield
                return
            if self._lock_fd is None or self._lock_pid != os.getpid():  # not inherited over fork
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                self._lock_pid = os.getpid()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._writer(), self.engine.connect() as plain:
            conn = plain.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def statements(self) -> Iterator[Connection]:
        """A connection on which each statement commits on its own (PostgreSQL's
        autocommit): for a write that is *one* statement, atomic by itself, it saves the
        ``BEGIN`` and ``COMMIT`` round trips of a transaction — two of the three an
        ``enqueue()`` paid. SQLite: an ordinary write transaction (its ``BEGIN
        IMMEDIATE`` is what serialises writers; nothing to save in-process)."""
        if self.is_sqlite:
            with self.write() as conn:
                yield conn
            return
        with self.engine.connect() as plain:
            yield plain.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
        if self._lock_fd is not None and self._lock_pid == os.getpid():
            os.close(self._lock_fd)
        self._lock_fd = None


class Store:
    """A store of rows: what each holds is the database it reads and writes."""

    def __init__(self, db: Database) -> None:
        self.db = db


def _ping_when_idle(engine: Engine, after: float) -> None:
    """Ping a connection on checkout if it has been idle ``after`` seconds; one that
    does not answer is replaced (``DisconnectionError`` makes the pool retry)."""

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info["notifyq_used"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info["notifyq_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        if time.monotonic() - record.info.get("notifyq_used", float("-inf")) < after:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as error:
            raise exc.DisconnectionError(f"pooled connection did not answer: {error}") from error
        if not alive:
            raise exc.DisconnectionError("pooled connection did not answer")


def _connect_timeout(url: URL) -> dict[str, int]:
    """A bound on connecting to PostgreSQL unless the URL sets its own: a server whose
    host is gone (not refusing: silent) would otherwise hold a request, a readiness
    check or beat's look at the store for as long as TCP keeps trying."""
    return {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT}


def _lock_file(database: str | None) -> str | None:
    if not database or database == ":memory:":
        return None
    return f"{database}.write-lock"


def _sqlite_engine(url: str, pool_size: int, max_overflow: int) -> Engine:
    make_sqlite_folder(url)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA cache_size=-16000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writing = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")

    return engine
