"""The worker-side group commit (tasks/writes.py) keeps every write a compare-and-set and
hands each submitter exactly what its own changes did: copies of one notification racing
in one process (as duplicate deliveries do) move it once, and only the winner hears so.
Real store (SQLite, and PostgreSQL when configured), real Redis, real threads."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text

from store import Change, Expect, NewNotification, Status
from store.schema import Event, Notification
from tasks import writes
from tasks.runtime import Runtime
from tests.services import wait_until

THREADS = 8
E = Event.__table__
N = Notification.__table__


def stored(rt: Runtime, count: int) -> list[int]:
    drafts = [NewNotification("ihuyi", f"+86139{i:08d}", content="x") for i in range(count)]
    return [e.id for e in rt.notifications.insert(drafts)]


def race(work: list) -> list:  # type: ignore[type-arg]
    """Run each callable in a thread of its own, released together; their answers."""
    start = threading.Barrier(len(work))
    answers: list = [None] * len(work)  # type: ignore[type-arg]

    def run(i: int) -> None:
        start.wait()
        answers[i] = work[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_copies_of_one_notification_in_one_process_move_it_once_and_only_the_winner_hears(
    runtime: Runtime,
) -> None:
    for _ in range(5):  # several rounds: the copies land in one group or in several
        (nid,) = stored(runtime, 1)
        row = runtime.notifications.get(nid)
        change = Change(nid, Status.SENDING, expect=Expect.row(row), count_attempt=True)
        answers = race([lambda change=change: writes.write(runtime, [change], 1.0)] * THREADS)
        winners = [a for a in answers if a]
        assert len(winners) == 1
        (applied,) = winners[0]
        assert (applied.id, applied.from_status, applied.to) == (
            nid,
            Status.QUEUED,
            Status.SENDING,
        )
        after = runtime.notifications.get(nid)
        assert (after.status, after.attempts, after.version) == ("sending", 1, row.version + 1)
        with runtime.db.read() as conn:
            moves = conn.execute(
                select(func.count()).where(E.c.notification_id == nid, E.c.to_status == "sending")
            ).scalar_one()
        assert moves == 1


def test_concurrent_tasks_each_get_their_own_rows_applied_and_nothing_else(
    runtime: Runtime,
) -> None:
    ids = stored(runtime, THREADS * 3)
    rows = {i: runtime.notifications.get(i) for i in ids}
    mine = [ids[t * 3 : t * 3 + 3] for t in range(THREADS)]

    def task(part: list[int]):  # type: ignore[no-untyped-def]
        changes = [
            Change(i, Status.SENDING, expect=Expect.row(rows[i]), count_attempt=True) for i in part
        ]
        return lambda: writes.write(runtime, changes, 1.0)

    answers = race([task(part) for part in mine])
    for part, applied in zip(mine, answers, strict=True):
        assert sorted(a.id for a in applied) == part
        assert all(a.to is Status.SENDING for a in applied)
    assert runtime.notifications.count_by_status() == {"sending": THREADS * 3}


def test_a_stale_change_in_a_group_fails_alone(runtime: Runtime) -> None:
    first, second = stored(runtime, 2)
    old = runtime.notifications.get(first)
    runtime.notifications.transition(
        [Change(first, Status.CANCELLED, expect=Expect.row(old))], now=1.0
    )
    fresh = runtime.notifications.get(second)
    answers = race(
        [
            lambda: writes.write(
                runtime, [Change(first, Status.SENDING, expect=Expect.row(old))], 2.0
            ),
            lambda: writes.write(
                runtime, [Change(second, Status.SENDING, expect=Expect.row(fresh))], 2.0
            ),
        ]
    )
    assert answers[0] == []
    assert [(a.id, a.to) for a in answers[1]] == [(second, Status.SENDING)]


def test_a_code_s_write_does_not_wait_for_the_campaign_writes_queued_in_its_process(
    runtime: Runtime,
) -> None:
    """A bulk group stuck in its transaction (a row lock held by another session here; a
    slow commit in life) and another bulk write queued behind it: an urgent or normal
    write goes meanwhile, in its own group. PostgreSQL only: on SQLite every write
    transaction takes the one write lock in turn, whichever queue it comes from."""
    if runtime.db.is_sqlite:
        pytest.skip("SQLite serialises every write transaction on its one write lock")
    held, queued, prompt = stored(runtime, 3)
    rows = {i: runtime.notifications.get(i) for i in (held, queued, prompt)}

    def sending(nid: int) -> list[Change]:
        return [Change(nid, Status.SENDING, expect=Expect.row(rows[nid]), count_attempt=True)]

    def blocked_on_a_lock() -> bool:
        with runtime.db.read() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )
                ).scalar_one()
            )

    done: dict[str, list] = {}  # type: ignore[type-arg]

    def submit(name: str, nid: int, bulk: bool) -> threading.Thread:
        def run() -> None:
            done[name] = writes.write(runtime, sending(nid), 1.0, bulk=bulk)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    with runtime.db.engine.connect() as other, other.begin() as lock:
        other.execute(select(N.c.id).where(N.c.id == held).with_for_update())
        stuck = submit("held", held, bulk=True)
        wait_until(blocked_on_a_lock, 30, what="the bulk group blocked on the row lock")
        behind = submit("queued", queued, bulk=True)
        urgent = submit("prompt", prompt, bulk=False)
        urgent.join(30)
        assert not urgent.is_alive(), "the urgent write waited for the bulk groups"
        assert [a.id for a in done["prompt"]] == [prompt]
        assert "held" not in done and "queued" not in done
        lock.rollback()
    stuck.join(30)
    behind.join(30)
    assert [a.id for a in done["held"]] == [held] and [a.id for a in done["queued"]] == [queued]
