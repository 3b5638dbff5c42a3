"""Bulk inserts through COPY on PostgreSQL (psycopg 3), executemany on SQLite
(store/bulk.py): the same rows either way, all or nothing in their transaction, and a
campaign import that stores its chunks behind the reading (tasks/campaigns/intake.py)
and still leaves nothing sendable when it fails half way.

SQLite always; PostgreSQL when NOTIFYQ_TEST_POSTGRES_URL is set (tests/conftest.py)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from providers.base import InvalidRequest
from store import Database, NotificationStore, bulk, copy_text
from store.bulk import json_strings
from store.campaigns import CANCELLED, ROW_COLUMNS, SCHEDULED, CampaignRow, CampaignStore
from store.migrate import ensure_schema
from store.schema import CampaignRecipient, Notification
from tasks.campaigns import intake
from tasks.campaigns.intake import CampaignSpec, import_campaign
from tasks.runtime import Runtime

N = Notification.__table__
R = CampaignRecipient.__table__
ROWS = 2 * bulk.COPY_MIN + 7


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    ensure_schema(database_url)
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows went through COPY (the real one still runs)."""
    counted: list[int] = []
    real, real_text = bulk._copy, bulk._copy_text

    def counting(conn: Any, table: Any, columns: Any, rows: Any, *rest: Any) -> None:
        counted.append(len(rows))
        real(conn, table, columns, rows, *rest)

    def counting_text(conn: Any, table: Any, columns: Any, payload: str) -> None:
        counted.append(payload.count("\n"))  # a row's own newlines are escaped
        real_text(conn, table, columns, payload)

    monkeypatch.setattr(bulk, "_copy", counting)
    monkeypatch.setattr(bulk, "_copy_text", counting_text)
    return counted


def campaign_of(store: CampaignStore, cron: str | None = None) -> Any:
    campaign_id = store.create(
        name="copy",
        provider="jumdata",
        template="1001",
        options={"playTimes": 2, "说明": "中文"},
        cron=cron,
    )
    return store.get(campaign_id)


def recipients(count: int, *, plain: bool = False) -> list[CampaignRow]:
    """Rows whose content and variables hold what COPY or JSON escape; ``plain``: none do
    (the payload's fast path, :mod:`store.copy_text`)."""
    if plain:
        return [
            CampaignRow(i + 1, f"+86135{i:08d}", None, (f"客户{i}", f"{i}.00") if i % 2 else ())
            for i in range(count)
        ]
    return [
        CampaignRow(
            i + 1,
            f"+86135{i:08d}",
            f"您好\t客户\\N{i}\n" if i % 3 == 0 else None,  # COPY's own escapes, as data
            (f"客户{i}", 'a "quoted" \\ value', "") if i % 2 else (),
        )
        for i in range(count)
    ]


def stored(db: Database, campaign_id: int) -> list[tuple[Any, ...]]:
    with db.read() as conn:
        rows = conn.execute(
            select(N.c.to, N.c.content, N.c.params, N.c.options, N.c.route, N.c.status, N.c.version)
            .where(N.c.campaign_id == campaign_id)
            .order_by(N.c.id)
        ).all()
    return [tuple(row) for row in rows]


def test_the_same_rows_arrive_through_copy_as_through_executemany(
    db: Database, copies: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CampaignStore(db, NotificationStore(db))
    rows = recipients(ROWS)
    by_copy = campaign_of(store)
    store.add_notifications(by_copy, rows, 1000.0)
    on_postgres = db.url.get_backend_name() == "postgresql"
    assert copies == ([ROWS] if on_postgres else [])  # SQLite keeps executemany

    monkeypatch.setattr(bulk, "COPY_MIN", 10**9)  # everything through executemany
    by_insert = campaign_of(store)
    store.add_notifications(by_insert, rows, 1000.0)
    assert copies == ([ROWS] if on_postgres else [])

    assert stored(db, by_copy.id) == stored(db, by_insert.id)
    first = stored(db, by_copy.id)[0]
    assert first[1] == "您好\t客户\\N0\n"
    assert (first[4], first[5].value, first[6]) == (None, "queued", 0)
    odd = stored(db, by_copy.id)[1]
    assert odd[2] == ["客户1", 'a "quoted" \\ value', ""]
    assert odd[3] == {"playTimes": 2, "说明": "中文"}


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "escaped"])
def test_copy_text_stores_what_executemany_stores(
    db: Database, copies: list[int], monkeypatch: pytest.MonkeyPatch, plain: bool
) -> None:
    store = CampaignStore(db, NotificationStore(db))
    rows = recipients(ROWS, plain=plain)
    by_copy = campaign_of(store)
    store.add_notifications(by_copy, rows, 1000.0)
    monkeypatch.setattr(bulk, "COPY_MIN", 10**9)
    by_insert = campaign_of(store)
    store.add_notifications(by_insert, rows, 1000.0)
    assert copies == ([ROWS] if db.url.get_backend_name() == "postgresql" else [])
    assert stored(db, by_copy.id) == stored(db, by_insert.id)
    assert [r[:3] for r in stored(db, by_copy.id)] == [
        (r.to, r.content, list(r.params)) for r in rows
    ]


def read_copy(payload: str) -> list[list[str | None]]:
    """COPY's text format read back: rows by newline, fields by tab, ``\\N`` NULL."""
    escapes = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    return [
        [
            None if f == "\\N" else re.sub(r"\\(.)", lambda m: escapes[m.group(1)], f)
            for f in line.split("\t")
        ]
        for line in payload.removesuffix("\n").split("\n")
    ]


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "escaped"])
def test_copy_text_reads_back_as_the_values(plain: bool) -> None:
    """Each column as it stands (nothing to escape in it) or escaped value by value."""
    texts = ["+8613500000000", "x"] if plain else ["您好\t客户\\N\n", "\r", ""]
    lists: list[tuple[str, ...]] = (
        [(), ("客户", "1.00")] if plain else [('a "q"', "b\\", "\x01\t"), ("",), ()]
    )
    shared = [None, 0, 1.5, "bulk", "\\N"]
    payload = copy_text.payload(
        [copy_text.text_column(texts), copy_text.json_list_column(lists)], shared
    )
    assert read_copy(payload) == [
        [t, json.dumps(list(v), ensure_ascii=False), None, "0", "1.5", "bulk", "\\N"]
        for t, v in zip(texts, lists, strict=True)
    ]
    assert copy_text.text_column([None, None]) == ["\\N", "\\N"]
    assert read_copy(copy_text.payload([copy_text.text_column([None, "a\tb"])], [])) == [
        [None],
        ["a\tb"],
    ]


def test_json_strings_writes_what_the_encoder_writes() -> None:
    for values in [(), ("a",), ("客户", 'q"uote', "back\\slash", "\x00\n\t", "é")]:
        assert json_strings(values) == json.dumps(list(values), ensure_ascii=False)
        assert json.loads(json_strings(values)) == list(values)
    assert json.loads(json_strings((1, "x"))) == [1, "x"]  # not all strings: the encoder


def test_recipients_too(db: Database, copies: list[int]) -> None:
    store = CampaignStore(db, NotificationStore(db))
    campaign = campaign_of(store, cron="0 9 * * *")
    store.add_recipients(campaign.id, recipients(ROWS))
    with db.read() as conn:
        got = conn.execute(
            select(R.c.row, R.c.to, R.c.params).where(R.c.campaign_id == campaign.id)
        ).all()
    assert len(got) == ROWS
    assert sorted(got)[1] == (2, "+8613500000001", ["客户1", 'a "quoted" \\ value', ""])


def test_a_copy_is_all_or_nothing_in_its_transaction(db: Database) -> None:
    store = CampaignStore(db, NotificationStore(db))
    campaign = campaign_of(store)
    fixed = (  # ROW_COLUMNS past to, content, params
        "jumdata",
        "1001",
        "{}",
        None,
        "queued",
        0,
        campaign.id,
        "admin",
        "bulk",
        1.0,
        1.0,
        1.0,
    )
    good = [(f"+86135{i:08d}", None, "[]", *fixed) for i in range(ROWS)]
    columns = ROW_COLUMNS
    assert columns.index("campaign_id") == 9
    # a row naming no campaign fails the foreign key at its turn, after the others
    bad = (*good[0][:9], 999_999, "admin", "bulk", 1.0, 1.0, 1.0)
    with pytest.raises(Exception), db.write() as conn:  # noqa: B017 -- the driver's own
        bulk.insert_rows(conn, N, columns, [*good, bad])
    # rows stored, then a failure later in the same transaction
    with pytest.raises(RuntimeError), db.write() as conn:
        bulk.insert_rows(conn, N, columns, good)
        raise RuntimeError("after the rows")
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(N)).scalar_one() == 0


# -- a whole import -----------------------------------------------------------------------


def csv_of(count: int, *, broken_at: int | None = None) -> io.TextIOBase:
    lines = [b"mobile,name,amount"]
    for i in range(count):
        if i == broken_at:
            lines.append(b"13900000001,\xff\xfe broken,1.00")  # not UTF-8: the reader stops
        lines.append(f"135{i:08d},客户{i},{i}.00".encode())
    return io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n"), encoding="utf-8", newline="")


SPEC = CampaignSpec(provider="jumdata", template="1001", options={"playTimes": 2})


def test_an_import_of_several_chunks_stores_every_row(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "CHUNK", bulk.COPY_MIN + 3)
    count = 4 * intake.CHUNK + 11
    result = import_campaign(runtime, SPEC, csv_of(count))
    assert (result.status, result.total, result.rejected) == (SCHEDULED, count, 0)
    with runtime.db.read() as conn:
        tos = conn.execute(select(N.c.to).where(N.c.campaign_id == result.id)).scalars().all()
    assert sorted(tos) == [f"+86135{i:08d}" for i in range(count)]


def test_a_chunk_that_fails_to_store_fails_the_import_and_cancels_what_was_stored(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "CHUNK", bulk.COPY_MIN)
    real = CampaignStore.add_notifications
    calls: list[int] = []

    def third_fails(self: CampaignStore, campaign: Any, rows: Any, not_before: float) -> None:
        calls.append(len(rows))
        if len(calls) == 3:
            raise OSError("the store went away")
        real(self, campaign, rows, not_before)

    monkeypatch.setattr(CampaignStore, "add_notifications", third_fails)
    with pytest.raises(OSError):
        import_campaign(runtime, SPEC, csv_of(10 * intake.CHUNK))
    # the chunks in flight beside the failed one (PostgreSQL stores several at once) and
    # the one read meanwhile may have gone to the store too; every one is cancelled
    in_flight = CampaignStore(runtime.db, runtime.notifications).parallel_writes
    assert 3 <= len(calls) <= 3 + in_flight
    counts = runtime.notifications.count_by_status()
    assert set(counts) == {"cancelled"} and counts["cancelled"] >= 2 * intake.CHUNK


def test_a_csv_that_breaks_after_chunks_leaves_nothing_sendable(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "CHUNK", bulk.COPY_MIN)
    with pytest.raises(InvalidRequest) as refused:
        import_campaign(runtime, SPEC, csv_of(40 * intake.CHUNK, broken_at=30 * intake.CHUNK))
    assert "cancelled" in refused.value.errors[0].message
    # chunks were stored before the break (the decoder reads ahead of the rows it hands out)
    counts = runtime.notifications.count_by_status()
    assert set(counts) == {"cancelled"} and counts["cancelled"] >= 2 * intake.CHUNK
    with runtime.db.read() as conn:
        (status,) = conn.execute(select(func.distinct(N.c.campaign_id))).scalars().all()
    assert CampaignStore(runtime.db, runtime.notifications).get(status).status == CANCELLED
