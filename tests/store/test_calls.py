"""The calls the ledger recorded for a number (store/calls.py), the caps' floor when
Redis may have forgotten some: each ``sending`` episode, from its cap stamp (or its
own time when it has none) to the row's next change, or still going; on SQLite and
PostgreSQL."""

from __future__ import annotations

import pytest

from scheduler.caps import Decision
from scheduler.caps_floor import PastCall, admitted_detail
from store import Change, Database, Expect, NewNotification, NotificationStore, Status
from store.calls import CallHistory
from store.migrate import ensure_schema

NUMBER = "+8613800138000"
OTHER = "+8613900139000"
T = 1_800_000_000.0
#: the cap stamp of the first call: a moment after its row was marked sending
STAMP = 1_800_000_010_001 / 1000


@pytest.fixture
def store(database_url: str) -> NotificationStore:
    ensure_schema(database_url)
    return NotificationStore(Database(database_url))


def _new(store: NotificationStore, provider: str = "ihuyi", to: str = NUMBER) -> int:
    (stored,) = store.insert([NewNotification(provider=provider, to=to, content="您好")], now=T)
    return stored.id


def _step(store: NotificationStore, nid: int, to: Status, at: float, **detail: object) -> None:
    row = store.get(nid)
    change = Change(nid, to, Expect.row(row), detail=detail or None)
    assert store.transition([change], now=at), (nid, to)


def test_each_sending_episode_is_a_call_from_its_stamp_to_the_rows_next_change(
    store: NotificationStore,
) -> None:
    done = _new(store)
    stamp = admitted_detail(Decision(True, now=STAMP))
    assert stamp is not None
    _step(store, done, Status.SENDING, T + 10, **stamp)
    _step(store, done, Status.SENT, T + 11)
    _step(store, done, Status.DELIVERED, T + 40)  # a receipt: not a call
    twice = _new(store)
    _step(store, twice, Status.SENDING, T + 20)  # no stamp (a provider without caps)
    _step(store, twice, Status.RETRYING, T + 21)
    _step(store, twice, Status.SENDING, T + 30)  # still going
    _new(store)  # never sent
    old = _new(store)
    _step(store, old, Status.SENDING, T - 1000)
    _step(store, old, Status.SENT, T - 999)
    elsewhere = _new(store, provider="jumdata")
    _step(store, elsewhere, Status.SENDING, T + 5)
    another = _new(store, to=OTHER)
    _step(store, another, Status.SENDING, T + 6)

    found = CallHistory(store.db).recent([("ihuyi", NUMBER), ("ihuyi", "+8613700137000")], T)
    assert found == {
        ("ihuyi", NUMBER): [
            PastCall(STAMP, T + 11),
            PastCall(T + 20, T + 21),
            PastCall(T + 30, None),
        ]
    }
    both = CallHistory(store.db).recent([("jumdata", NUMBER), ("ihuyi", OTHER)], T)
    assert both == {
        ("jumdata", NUMBER): [PastCall(T + 5, None)],
        ("ihuyi", OTHER): [PastCall(T + 6, None)],
    }
    assert CallHistory(store.db).recent([], T) == {}
