"""The ledger on SQLite and (when configured) PostgreSQL: idempotent inserts, guarded
transitions with their events, receipts before and after their notification."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from sqlalchemy import event, exc, select, text

from store import (
    Change,
    Database,
    Expect,
    NewNotification,
    NewReceipt,
    NotificationRow,
    NotificationStore,
    ReceiptStore,
    RouteLeg,
    Status,
)
from store.bulk import among
from store.migrate import ensure_schema
from store.notifications import IllegalTransition
from store.schema import Notification, table_of


@pytest.fixture
def store(database_url: str) -> NotificationStore:
    ensure_schema(database_url)
    return NotificationStore(Database(database_url))


def draft(key: str | None = None, to: str = "+8613800138000") -> NewNotification:
    return NewNotification(provider="ihuyi", to=to, content="您好", idempotency_key=key)


def moved(store: NotificationStore, notification_id: int, to: Status, **fields: Any) -> Change:
    """A change to ``to`` decided from the row as it is now."""
    return Change(notification_id, to, expect=Expect.row(store.get(notification_id)), **fields)


def test_insert_stores_queued_rows_with_no_event_yet(store: NotificationStore) -> None:
    (result,) = store.insert([draft()])
    row = store.get(result.id)
    assert (result.created, result.status, row.status, row.attempts) == (
        True,
        Status.QUEUED,
        Status.QUEUED,
        0,
    )
    assert store.events(result.id) == []


def test_the_same_idempotency_key_returns_the_first_notification(store: NotificationStore) -> None:
    (first,) = store.insert([draft("order-9633")])
    (again,) = store.insert([draft("order-9633", to="+8613900139000")])
    assert (again.id, again.created) == (first.id, False)
    assert store.get(first.id).to == "+8613800138000"


def test_a_key_repeated_inside_one_batch_stores_one_row(store: NotificationStore) -> None:
    results = store.insert([draft("k"), draft("k"), draft()])
    assert results[0].id == results[1].id and results[0].created and not results[1].created
    assert store.count_by_status() == {"queued": 2}


def test_concurrent_inserts_with_one_key_store_one_row(store: NotificationStore) -> None:
    ids: list[int] = []

    def insert() -> None:
        ids.append(store.insert([draft("race")])[0].id)

    threads = [threading.Thread(target=insert) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert store.count_by_status() == {"queued": 1}


def test_a_legal_transition_writes_its_event_in_the_same_change(store: NotificationStore) -> None:
    (n,) = store.insert([draft()])
    applied = store.transition([moved(store, n.id, Status.SENDING, count_attempt=True)])
    assert [(a.from_status, a.to) for a in applied] == [(Status.QUEUED, Status.SENDING)]
    store.transition(
        [moved(store, n.id, Status.SENT, values={"provider_ref": "604"}, detail={"code": "2"})]
    )
    row = store.get(n.id)
    assert (row.status, row.attempts, row.provider_ref) == (Status.SENT, 1, "604")
    events = store.events(n.id)
    assert [(e.from_status, e.to_status) for e in events] == [
        (Status.QUEUED, Status.SENDING),
        (Status.SENDING, Status.SENT),
    ]
    assert events[1].detail == {"code": "2"}


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], Status.SENT),  # queued → sent skips sending
        ([], Status.DELIVERED),
        ([Status.SENDING, Status.SENT], Status.SENDING),  # never send again once sent
        ([Status.SENDING, Status.SENT, Status.DELIVERED], Status.UNDELIVERED),
        ([Status.CANCELLED], Status.SENDING),
        ([Status.SENDING, Status.UNKNOWN], Status.SENDING),
    ],
)
def test_an_illegal_transition_is_refused_and_changes_nothing(
    store: NotificationStore, path: list[Status], illegal: Status
) -> None:
    (n,) = store.insert([draft()])
    for status in path:
        assert store.transition([moved(store, n.id, status)])
    before = store.get(n.id).status
    assert store.transition([moved(store, n.id, illegal)]) == []
    assert store.get(n.id).status == before
    assert len(store.events(n.id)) == len(path)


def test_expect_narrows_a_transition_to_a_compare_and_set(store: NotificationStore) -> None:
    (n,) = store.insert([draft()])
    assert (
        store.transition([Change(n.id, Status.FAILED, expect=Expect.any_of(Status.SENDING))]) == []
    )
    assert store.get(n.id).status == Status.QUEUED


def test_a_change_decided_from_an_older_version_is_dropped_though_the_status_matches(
    store: NotificationStore,
) -> None:
    """queued → sending → queued (a fail-over hop): a task that read the first ``queued``
    must not act on the second, although the status is the same and the move legal."""
    (n,) = store.insert([draft()])
    first = store.get(n.id)
    assert store.transition([Change(n.id, Status.SENDING, expect=Expect.row(first))])
    sending = store.get(n.id)
    assert store.transition([Change(n.id, Status.QUEUED, expect=Expect.row(sending))])
    stale = Change(n.id, Status.DEFERRED, expect=Expect.row(first), values={"next_attempt_at": 1.0})
    assert store.transition([stale]) == []
    row = store.get(n.id)
    assert (row.status, row.version) == (Status.QUEUED, 2)
    fresh = Change(n.id, Status.SENDING, expect=Expect.row(row), count_attempt=True)
    assert [a.to for a in store.transition([fresh])] == [Status.SENDING]


def test_a_row_changed_twice_in_one_batch_is_written_in_order(store: NotificationStore) -> None:
    """The second change expects the version the first leaves and sets other columns:
    written out of order, it would match nothing while its event said it happened."""
    (n,) = store.insert([draft()])
    (other,) = store.insert([draft(to="+8613900139000")])
    first = store.get(n.id)
    applied = store.transition(
        [
            # another row's change with the very columns of this row's second change
            moved(store, other.id, Status.DEFERRED, values={"next_attempt_at": 9.0}),
            Change(n.id, Status.SENDING, expect=Expect.row(first), count_attempt=True),
            Change(
                n.id,
                Status.RETRYING,
                expect=Expect(frozenset({Status.SENDING}), first.version + 1),
                reason="net:timeout",
                values={"next_attempt_at": 5.0},
            ),
        ]
    )
    assert [(a.id, a.to) for a in applied] == [
        (other.id, Status.DEFERRED),
        (n.id, Status.SENDING),
        (n.id, Status.RETRYING),
    ]
    row = store.get(n.id)
    assert (row.status, row.version, row.attempts, row.next_attempt_at) == (
        Status.RETRYING,
        first.version + 2,
        1,
        5.0,
    )
    assert [e.to_status for e in store.events(n.id)] == [Status.SENDING, Status.RETRYING]


def test_only_one_of_two_racing_claims_wins(store: NotificationStore) -> None:
    (n,) = store.insert([draft()])
    wins: list[int] = []
    barrier = threading.Barrier(6)

    def claim() -> None:
        barrier.wait()
        wins.extend(a.id for a in store.transition([moved(store, n.id, Status.SENDING)]))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins == [n.id]


def test_a_receipt_before_its_send_is_kept_and_applied_once_sent(store: NotificationStore) -> None:
    receipts = ReceiptStore(store.db, store)
    (n,) = store.insert([draft()])
    early = NewReceipt("ihuyi", "604", delivered=False, code="-6", message="无人接听")
    assert receipts.record([early]) == []
    assert receipts.pending() == 1
    store.transition([moved(store, n.id, Status.SENDING)])
    with store.db.write() as conn:
        store.transition(
            [moved(store, n.id, Status.SENT, values={"provider_ref": "604"})],
            conn=conn,
        )
        applied = receipts.apply(conn, [("ihuyi", "604")], 0.0)
    assert [(a.id, a.to) for a in applied] == [(n.id, Status.UNDELIVERED)]
    assert store.get(n.id).reason == "receipt:-6"
    assert receipts.pending() == 0


def test_the_same_receipt_three_times_changes_nothing_after_the_first(
    store: NotificationStore,
) -> None:
    receipts = ReceiptStore(store.db, store)
    (n,) = store.insert([draft()])
    store.transition([moved(store, n.id, Status.SENDING)])
    store.transition([moved(store, n.id, Status.SENT, values={"provider_ref": "77"})])
    first = receipts.record([NewReceipt("ihuyi", "77", delivered=True, code="2")])
    assert [a.to for a in first] == [Status.DELIVERED]
    for _ in range(2):
        assert receipts.record([NewReceipt("ihuyi", "77", delivered=False, code="-6")]) == []
    assert store.get(n.id).status == Status.DELIVERED
    assert len(store.events(n.id)) == 3


def test_a_receipt_stored_early_and_pushed_again_after_the_send_applies_once(
    store: NotificationStore,
) -> None:
    receipts = ReceiptStore(store.db, store)
    (n,) = store.insert([draft()])
    receipts.record([NewReceipt("ihuyi", "905", delivered=True, code="2", message="ok")])
    store.transition([moved(store, n.id, Status.SENDING)])
    store.transition([moved(store, n.id, Status.SENT, values={"provider_ref": "905"})])
    # the provider retries its push: the stored copy (not this one) is what applies
    again = receipts.record([NewReceipt("ihuyi", "905", delivered=False, code="-6")])
    assert [(a.id, a.to) for a in again] == [(n.id, Status.DELIVERED)]
    assert receipts.record([NewReceipt("ihuyi", "905", delivered=True, code="2")]) == []
    assert receipts.pending() == 0
    final = store.events(n.id)[-1]
    assert (final.to_status, final.detail) == (Status.DELIVERED, {"code": "2", "message": "ok"})


def sent_rows(store: NotificationStore, count: int) -> list[int]:
    ids = [r.id for r in store.insert([draft(to=f"+861380013{i:04d}") for i in range(count)])]
    store.transition([moved(store, i, Status.SENDING) for i in ids])
    store.transition([moved(store, i, Status.SENT, values={"provider_ref": f"c{i}"}) for i in ids])
    return ids


def test_a_page_of_receipts_moves_each_row_to_its_outcome(store: NotificationStore) -> None:
    receipts = ReceiptStore(store.db, store)
    ids = sent_rows(store, 6)
    page = [NewReceipt("ihuyi", f"c{i}", delivered=i % 2 == 0, code=str(i % 3)) for i in ids]
    assert receipts.record([NewReceipt("jumdata", "c1", True, "0")]) == []  # not ihuyi's call
    applied = receipts.record(page)
    assert sorted(a.id for a in applied) == ids
    for i in ids:
        row, last = store.get(i), store.events(i)[-1]
        if i % 2 == 0:
            assert (row.status, row.reason) == (Status.DELIVERED, None)
        else:
            assert (row.status, row.reason) == (Status.UNDELIVERED, f"receipt:{i % 3}")
        assert (last.from_status, last.to_status) == (Status.SENT, row.status)
        assert last.detail == {"code": str(i % 3), "message": None}
    assert receipts.pending() == 1  # jumdata's, kept for a notification yet to come


def test_moving_many_alike_moves_only_the_rows_still_in_the_source_status(
    store: NotificationStore,
) -> None:
    ids = sent_rows(store, 4)
    store.transition([moved(store, ids[0], Status.DELIVERED)])
    with store.db.write() as conn:
        applied = store.move_alike(
            conn,
            ids,
            source=Status.SENT,
            to=Status.UNDELIVERED,
            reason="receipt:1",
            details={ids[1]: {"code": "1"}},
            now=5.0,
        )
    assert sorted(a.id for a in applied) == ids[1:]
    assert store.get(ids[0]).status == Status.DELIVERED
    assert [e.to_status for e in store.events(ids[0])][-1] == Status.DELIVERED
    assert store.events(ids[1])[-1].detail == {"code": "1"}
    assert store.events(ids[2])[-1].detail is None


def test_moving_many_alike_refuses_an_illegal_transition(store: NotificationStore) -> None:

    (n,) = store.insert([draft()])
    with store.db.write() as conn, pytest.raises(IllegalTransition):
        store.move_alike(
            conn, [n.id], source=Status.QUEUED, to=Status.DELIVERED, reason=None, details={}, now=0
        )
    assert store.get(n.id).status == Status.QUEUED


# -- one statement, committed alone (store/db.py Database.statements) ---------------------


def test_a_group_of_new_rows_is_one_statement_and_all_or_nothing(database_url: str) -> None:
    ensure_schema(database_url)
    db = Database(database_url)
    store = NotificationStore(db)
    inserts: list[str] = []
    event.listen(
        db.engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_: (
            inserts.append(statement) if statement.lstrip().upper().startswith("INSERT") else None
        ),
    )
    made = store.insert([draft(to=f"+86138001{i:05d}") for i in range(50)])
    assert len({m.id for m in made}) == 50
    if db.is_sqlite:  # a write transaction there (BEGIN IMMEDIATE is its writers' queue)
        return
    assert len(inserts) == 1  # so committing it on its own commits all 50 or none
    # a group whose last row the database refuses (too long for its column) stores none
    bad = [draft(to=f"+86139001{i:05d}") for i in range(9)] + [draft(to="+86" + "1" * 30)]
    with pytest.raises(exc.DataError):
        store.insert(bad)
    with db.read() as conn:
        stored = conn.execute(
            text('SELECT count(*) FROM notifications WHERE "to" LIKE :prefix'),
            {"prefix": "+86139001%"},
        ).scalar_one()
    assert stored == 0
    db.dispose()


def test_among_is_in_on_both_stores_the_empty_list_included(store: NotificationStore) -> None:
    made = store.insert([draft(to=f"+86138002{i:05d}") for i in range(5)])
    ids = [m.id for m in made]
    table = Notification.__table__
    with store.db.read() as conn:

        def found(values: list[int]) -> list[int]:
            query = select(table.c.id).where(among(conn, table.c.id, values))
            return sorted(conn.execute(query).scalars())

        assert found([*ids[1:4], 10**9]) == ids[1:4]
        assert found([]) == []


def test_the_store_hands_out_frozen_typed_rows_with_typed_route_legs(
    store: NotificationStore,
) -> None:
    route = [
        {"provider": "jumdata", "template": "1001", "params": ["张三"]},
        {"provider": "apispace-voice", "template": "T1", "options": {"playTimes": 2}},
    ]
    (made,) = store.insert(
        [NewNotification("ihuyi", "+8613800138000", content="c", params=["1"], route=route)]
    )
    row = store.get(made.id)
    assert isinstance(row, NotificationRow)
    assert (row.status, row.version, row.attempts, row.params) == (Status.QUEUED, 0, 0, ("1",))
    assert row.route == (
        RouteLeg("jumdata", template="1001", params=("张三",)),
        RouteLeg("apispace-voice", template="T1", options={"playTimes": 2}),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.status = Status.SENT  # type: ignore[misc]
    # a leg goes back to the column as it came: every key, always
    assert [leg.to_json() for leg in row.route] == [
        {
            "provider": "jumdata",
            "template": "1001",
            "content": None,
            "params": ["张三"],
            "options": {},
        },
        {
            "provider": "apispace-voice",
            "template": "T1",
            "content": None,
            "params": [],
            "options": {"playTimes": 2},
        },
    ]
    with store.db.read() as conn:
        assert store.load(conn, [made.id, 10**9]) == [row]  # an unknown id is left out
    plain = store.get(store.insert([draft(to="+8613900139000")])[0].id)
    assert plain is not None and plain.route == () and plain.options == {}


def test_a_notification_row_has_a_field_for_every_column_and_no_other() -> None:
    """A column added to the table without its field would vanish from every row the
    store hands out; one added here without a column would fail every read."""
    columns = set(table_of(Notification).c.keys())
    assert {f.name for f in dataclasses.fields(NotificationRow)} == columns
