"""A young PostgreSQL store — no statistics yet, as before autovacuum first analyzes
its tables (a new store's first minute, or the minute after a large import) — plans
the hot look-ups on the index that finds each row, not on one that reads a whole
class of rows for each of them. ``bench/api.py --e2e-only`` read 578,000 index entries
for 2,000 sends (every ``queued`` row for each write), and 3.7 million event rows for
6,000 (the caps' floor, a hash join over every partition), more as the tables grew.

Each test plans the statement the store runs, on tables never analyzed, and reads
the plan (``EXPLAIN``, no ``ANALYZE``: nothing runs). PostgreSQL only: SQLite's
planner is tested by what it reads elsewhere (store/notifications.py ``unindexed``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, create_engine, insert

from store.bulk import probed
from store.calls import _calls
from store.notifications import _compare_and_set
from store.schema import Notification, Receipt, table_of

N = table_of(Notification)
R = table_of(Receipt)


@pytest.fixture
def new(database_url: str) -> Iterator[Connection]:
    """A connection to a migrated PostgreSQL database, empty and never analyzed."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's planner; SQLite keeps no statistics to lack")
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture
def young(new: Connection) -> Connection:
    """The same with a few hundred rows, never analyzed."""
    now = time.time()
    rows = [
        {
            "provider": "ihuyi",
            "to": f"+86138{i:08d}",
            "content": "您好",
            "status": "queued",
            "version": 0,
            "attempts": 0,
            "priority": "normal",
            "provider_ref": str(10_000 + i),
            "created_at": now,
            "updated_at": now,
        }
        for i in range(300)
    ]
    new.execute(insert(N), rows)
    new.commit()
    return new


def plan(conn: Connection, statement: object, params: dict[str, object]) -> str:
    compiled = statement.compile(  # type: ignore[attr-defined]
        dialect=conn.dialect, compile_kwargs={"literal_binds": False}
    )
    return "\n".join(
        row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", {**compiled.params, **params})
    )


@pytest.mark.parametrize("rows", [0, 300])
def test_a_compare_and_set_finds_its_row_by_the_primary_key(
    new: Connection, rows: int, request: pytest.FixtureRequest
) -> None:
    conn = request.getfixturevalue("young") if rows else new
    found = plan(
        conn,
        _compare_and_set(("status",)),
        {"b_id": 7, "b_from": "queued", "b_version": 0, "v_status": "sending"},
    )
    assert "notifications_pkey" in found, found
    assert "ix_notifications_due" not in found, found


def test_receipts_are_probed_by_provider_and_reference_together(young: Connection) -> None:
    query = probed(
        young,
        (R.c.id, R.c.provider_ref),
        R.c.provider_ref,
        [str(10_000 + i) for i in range(20)],
        R.c.provider == "ihuyi",
        R.c.applied_at.is_(None),
    )
    found = plan(young, query, {})
    condition = next(line for line in found.splitlines() if "Index Cond" in line)
    assert "provider_ref" in condition and "provider" in condition.replace("provider_ref", ""), (
        found
    )


def test_the_caps_floor_reads_events_by_row_not_whole_partitions(young: Connection) -> None:
    numbers = [f"+86138{i:08d}" for i in range(16)]
    found = plan(young, _calls(young, numbers, time.time() - 86_400), {})
    assert "Seq Scan on events" not in found, found
    assert "Hash Join" not in found, found
