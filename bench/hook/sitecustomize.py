"""Bench-only: count the SQL statements a process sends to its store.

Loaded by Python at start-up in any process whose ``PYTHONPATH`` has ``bench/hook`` first
(the benches put it there for the workers they start; production never does). When
``NOTIFYQ_BENCH_COUNT_SQL`` names a directory, every SQLAlchemy engine's
``before_cursor_execute`` adds the statement to this process's count (an ``executemany``
counts as one statement: one round trip to the driver; each COMMIT counts too), and a thread writes the count to
``<dir>/<pid>.json`` twice a second, so the bench reads it whatever way the process ends.
Nothing else changes in the process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

_directory = os.environ.get("NOTIFYQ_BENCH_COUNT_SQL")

if _directory:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    _counts: Counter[str] = Counter()
    _lock = threading.Lock()

    @event.listens_for(Engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        with _lock:
            _counts[verb] += 1

    @event.listens_for(Engine, "commit")
    def _commit(conn):  # type: ignore[no-untyped-def]
        with _lock:
            _counts["COMMIT"] += 1

    def _dump() -> None:
        path = Path(_directory) / f"{os.getpid()}.json"
        while True:
            time.sleep(0.5)
            with _lock:
                text = json.dumps(dict(_counts))
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)

    threading.Thread(target=_dump, name="bench-sql-count", daemon=True).start()
