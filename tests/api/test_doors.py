"""The doors of the API, in process over a real store and a real Redis:
idempotency keys belong to one API key and name one request (409 for another), a /v1
body over its limit is 413 before it is parsed, each provider's callbacks open with its
own secret (the shared one only while a setting keeps old URLs alive), receipts for
unknown references expire, campaign creation is bounded, and /metrics and /docs can be
closed behind the key."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import func, select, update

from api.app import create_app
from api.expiry import purge_unknown_receipts
from store import NewNotification, NewReceipt
from store.schema import Campaign, Notification, Receipt
from tasks.runtime import Runtime
from tests.api.test_notifications_api import TEXT, dispatched, one
from tests.conftest import TEST_CREDENTIALS, embedded_settings
from tests.services import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEY_ONE, KEY_TWO = TEST_CREDENTIALS["NOTIFYQ_API_KEYS"].split(",")
ONE = {"Authorization": f"Bearer {KEY_ONE}"}
TWO = {"Authorization": f"Bearer {KEY_TWO}"}


@pytest.fixture
def make_client(database_url: str, redis_url: str) -> Iterator[Any]:
    opened: list[tuple[Runtime, TestClient]] = []

    def factory(**overrides: Any) -> tuple[TestClient, Runtime]:
        base = embedded_settings(database_url, redis_url)
        settings = base.model_copy(update=overrides)
        runtime = Runtime.build(settings)
        client = TestClient(create_app(settings, runtime))
        client.__enter__()
        opened.append((runtime, client))
        return client, runtime

    yield factory
    for runtime, client in opened:
        client.__exit__(None, None, None)
        runtime.close()


def receipts(runtime: Runtime) -> int:
    with runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Receipt)).scalar_one()


# -- idempotency ---------------------------------------------------------------------------


def test_idempotency_keys_are_per_api_key_and_a_different_payload_is_409(
    make_client: Any, redis_url: str
) -> None:
    client, runtime = make_client()
    broker = redis.Redis.from_url(redis_url)
    first = client.post("/v1/notifications", json=one(idempotency_key="order-1"), headers=ONE)
    assert first.status_code == 202, first.text
    # another API key, the same key: its own notification
    other = client.post("/v1/notifications", json=one(idempotency_key="order-1"), headers=TWO)
    assert other.status_code == 202, other.text
    assert other.json()["id"] != first.json()["id"]
    # the same request again (the number spelt differently): the first answer
    again = client.post(
        "/v1/notifications", json=one("+86 138 0013 8000", idempotency_key="order-1"), headers=ONE
    )
    assert (again.status_code, again.json()) == (200, first.json())
    # the same key for another request: 409 naming the field, nothing stored or queued
    before = runtime.notifications.count_by_status()
    for changed in (
        one("13800138001", idempotency_key="order-1"),
        one(idempotency_key="order-1", content=TEXT + "！"),
        {**one(idempotency_key="order-1"), "options": {"x": 1}},
    ):
        clash = client.post("/v1/notifications", json=changed, headers=ONE)
        assert clash.status_code in (409, 422), clash.text
        if clash.status_code == 409:
            assert clash.json()["errors"][0]["field"] == "idempotency_key"
    assert (
        client.post(
            "/v1/notifications", json=one("13800138001", idempotency_key="order-1"), headers=ONE
        ).status_code
        == 409
    )
    assert runtime.notifications.count_by_status() == before
    # each once (in one message or two: they may share the linger)
    assert sorted(i for m in dispatched(broker) for i in m) == [
        first.json()["id"],
        other.json()["id"],
    ]


def test_a_batch_names_the_item_whose_key_was_used_for_another_request(make_client: Any) -> None:
    client, runtime = make_client()
    assert (
        client.post("/v1/notifications", json=one(idempotency_key="k-9"), headers=ONE).status_code
        == 202
    )
    answer = client.post(
        "/v1/notifications:batch",
        json={
            "notifications": [
                one(idempotency_key="k-9"),
                one("13800138002", idempotency_key="k-9"),
                one("13800138003", idempotency_key="k-10"),
            ]
        },
        headers=ONE,
    )
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert items[0]["id"] is not None and items[0]["created"] is False
    assert items[1]["id"] is None
    assert items[1]["errors"][0]["field"] == "idempotency_key"
    assert items[2]["created"] is True
    assert runtime.notifications.count_by_status() == {"queued": 2}


# -- body size -----------------------------------------------------------------------------


def test_a_v1_body_over_the_limit_is_413_before_parsing_and_stores_nothing(
    make_client: Any,
) -> None:
    client, runtime = make_client(api_max_bytes=2048)
    big = b'{"provider": "ihuyi", "to": "13800138000", "content": "' + b"x" * 4096 + b'"}'
    declared = client.post(
        "/v1/notifications", content=big, headers={**ONE, "content-type": "application/json"}
    )
    assert declared.status_code == 413, declared.text
    assert declared.json()["errors"][0]["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield big[:1000]
        yield big[1000:]

    streamed = client.post(
        "/v1/notifications", content=chunks(), headers={**ONE, "content-type": "application/json"}
    )
    assert streamed.status_code == 413, streamed.text
    # not even a hint to a stranger: 401 comes first
    assert client.post("/v1/notifications", content=big).status_code == 401
    # under the limit: taken
    assert client.post("/v1/notifications", json=one(), headers=ONE).status_code == 202
    assert runtime.notifications.count_by_status() == {"queued": 1}


# -- callbacks -----------------------------------------------------------------------------


IHUYI_RECEIPT = {"code": "2", "msg": "ok", "voiceid": "never-ours-1", "mobile": "13800138000"}


@pytest.mark.parametrize("fallback", [False, True])
def test_each_provider_opens_with_its_own_secret_and_the_shared_one_behind_a_setting(
    make_client: Any, fallback: bool
) -> None:

    client, runtime = make_client(
        ihuyi_callback_token=SecretStr("ihuyi-own-secret-1"),
        jumdata_callback_token=SecretStr("jumdata-own-secret-2"),
        callback_shared_token_fallback=fallback,
    )
    shared = TEST_CREDENTIALS["NOTIFYQ_CALLBACK_TOKEN"]
    assert runtime.settings.callback_url("ihuyi/receipt").endswith(
        "/callbacks/ihuyi-own-secret-1/ihuyi/receipt"
    )
    post = lambda token, route, body: client.post(f"/callbacks/{token}/{route}", data=body)  # noqa: E731
    assert post("ihuyi-own-secret-1", "ihuyi/receipt", IHUYI_RECEIPT).status_code == 200
    # one provider's secret never opens another's door
    assert post("ihuyi-own-secret-1", "jumdata", {"callId": "x"}).status_code == 404
    assert post("jumdata-own-secret-2", "ihuyi/receipt", IHUYI_RECEIPT).status_code == 404
    # the old shared URL: only while the migration setting keeps it
    assert post(shared, "ihuyi/receipt", IHUYI_RECEIPT).status_code == (200 if fallback else 404)
    # a provider with no secret of its own still takes the shared one
    assert client.post(f"/callbacks/{shared}/itniotech", json=[]).status_code in (200, 400)
    assert post("nobody", "ihuyi/receipt", IHUYI_RECEIPT).status_code == 404
    assert receipts(runtime) == 1


# -- receipts for unknown references ------------------------------------------------------


def test_receipts_for_unknown_references_expire_and_known_ones_stay(
    database_url: str, redis_url: str
) -> None:
    settings = embedded_settings(database_url, redis_url).model_copy(
        update={"receipt_unknown_ttl": 3600}
    )
    runtime = Runtime.build(settings)  # no API here: its own sweep would race the test
    (row,) = runtime.notifications.insert([NewNotification("ihuyi", "+8613800138000", content="a")])

    with runtime.db.write() as conn:  # a notification sent elsewhere, awaiting its receipt
        conn.execute(
            update(Notification.__table__)
            .where(Notification.__table__.c.id == row.id)
            .values(provider_ref="ours-1")
        )
    old, fresh = 1_000_000.0, 1_000_000.0 + 3000
    runtime.receipts.record([NewReceipt("ihuyi", "stranger-1", True, "2", "ok", {})], now=old)
    runtime.receipts.record([NewReceipt("ihuyi", "ours-1", True, "2", "ok", {})], now=old)
    runtime.receipts.record([NewReceipt("ihuyi", "stranger-2", True, "2", "ok", {})], now=fresh)
    assert receipts(runtime) == 3
    assert purge_unknown_receipts(runtime, now=old + 3601) == 1
    with runtime.db.read() as conn:
        refs = sorted(r for (r,) in conn.execute(select(Receipt.__table__.c.provider_ref)))
    assert refs == ["ours-1", "stranger-2"]
    runtime.close()


def test_the_api_sweeps_expired_receipts_on_its_own(
    make_client: Any, database_url: str, redis_url: str
) -> None:
    runtime = Runtime.build(embedded_settings(database_url, redis_url))  # no API yet
    try:
        runtime.receipts.record([NewReceipt("ihuyi", "stranger-9", True, "2", "ok", {})], now=1.0)
        assert receipts(runtime) == 1
        make_client()  # an API process starts: its first sweep runs at start-up
        wait_until(lambda: receipts(runtime) == 0, 30, what="the start-up sweep")
    finally:
        runtime.close()


# -- campaigns -----------------------------------------------------------------------------


def campaign(rows: int) -> dict[str, Any]:
    return {
        "provider": "ihuyi",
        "content": "您好{name}",
        "recipients": [{"mobile": f"1380013{i:04d}", "name": "张"} for i in range(rows)],
    }


def test_campaigns_are_bounded_in_rows_and_per_key_per_minute(make_client: Any) -> None:
    client, runtime = make_client(campaign_max_rows=3, campaigns_per_minute=2)
    too_many = client.post("/v1/campaigns", json=campaign(4), headers=ONE)
    assert too_many.status_code == 422, too_many.text
    assert too_many.json()["errors"][0]["field"] == "recipients"
    csv_rows = "mobile,name\n" + "".join(f"1380013{i:04d},张\n" for i in range(4))
    as_csv = client.post(
        "/v1/campaigns",
        json={"provider": "ihuyi", "content": "您好{name}", "csv": csv_rows},
        headers=ONE,
    )
    assert as_csv.status_code == 422 and as_csv.json()["errors"][0]["field"] == "csv"
    for _ in range(2):
        assert client.post("/v1/campaigns", json=campaign(3), headers=ONE).status_code == 201
    third = client.post("/v1/campaigns", json=campaign(3), headers=ONE)
    assert third.status_code == 429, third.text
    assert 1 <= int(third.headers["retry-after"]) <= 60
    # another key has its own minute
    assert client.post("/v1/campaigns", json=campaign(3), headers=TWO).status_code == 201
    with runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Campaign)).scalar_one() == 3


def test_a_campaign_body_has_its_own_larger_limit(make_client: Any) -> None:
    client, _ = make_client(api_max_bytes=2048, campaign_max_bytes=64 * 1024)
    assert client.post("/v1/campaigns", json=campaign(40), headers=ONE).status_code == 201
    huge = client.post(
        "/v1/campaigns",
        json={"provider": "ihuyi", "content": "x", "csv": "mobile\n" * 20_000},
        headers=ONE,
    )
    assert huge.status_code == 413


# -- operator routes -------------------------------------------------------------------------


def test_metrics_and_docs_are_open_by_default_and_behind_the_key_by_a_setting(
    make_client: Any,
) -> None:

    open_client, _ = make_client()
    assert open_client.get("/metrics").status_code == 200
    assert open_client.get("/docs").status_code == 200
    client, _ = make_client(ops_routes_need_key=True, metrics_token=SecretStr("scrape-only-1"))
    scrape = {"Authorization": "Bearer scrape-only-1"}
    for path in ("/metrics", "/docs", "/openapi.json", "/redoc"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=ONE).status_code == 200, path
    assert client.get("/metrics", headers=scrape).status_code == 200
    assert client.get("/docs", headers=scrape).status_code == 401  # the scrape token is narrow
    assert client.post("/v1/notifications", json=one(), headers=scrape).status_code == 401
    assert client.get("/healthz").status_code == 200
