"""``/v1/notifications`` as the README states it, in process over a
real store and a real Redis: an idempotency key answers 200 with the first notification
(409 for another request) and queues nothing twice; a batch answers each item and stores only the good ones; a
notification reads back with its number masked and its history; ``/readyz`` says
which dependency is down; ``/metrics`` counts the ledger."""

from __future__ import annotations

import base64
import json
import math
import re
import warnings
from typing import Any

import pytest
import redis

from api.app import create_app
from store import Change, Expect, Status
from tasks.publish import flush_dispatch
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS, embedded_settings
from tests.services import free_port
from worker.queues import DISPATCH_QUEUE

with warnings.catch_warnings():  # starlette's TestClient nags about httpx at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[1]}"}
TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def dispatched(broker: redis.Redis) -> list[list[int]]:
    """The id lists of the dispatch messages waiting in the broker, oldest first, once
    this process's publisher has sent what it gathered (a single post is answered at its
    commit; its id leaves within the linger)."""
    flush_dispatch()
    ids = []
    for raw in reversed(broker.lrange(DISPATCH_QUEUE, 0, -1)):  # LPUSHed: newest first
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids


def one(number: str = "13800138000", **extra: Any) -> dict[str, Any]:
    return {"provider": "ihuyi", "to": number, "content": TEXT, **extra}


# -- idempotency -------------------------------------------------------------------------------


def test_the_same_idempotency_key_answers_200_with_the_first_and_queues_nothing_twice(
    api_client: TestClient, runtime: Runtime, broker: redis.Redis
) -> None:
    first = api_client.post(
        "/v1/notifications", json=one(idempotency_key="order-9633"), headers=AUTH
    )
    assert first.status_code == 202, first.text
    created = first.json()
    assert created["status"] == "queued"

    again = api_client.post(
        "/v1/notifications",
        json=one("+86 138 0013 8000", idempotency_key="order-9633"),  # the number respelt
        headers=AUTH,
    )
    assert again.status_code == 200, again.text
    assert again.json() == created
    other = api_client.post(  # another request under the same key (tests/api/test_doors.py)
        "/v1/notifications", json=one("13800138001", idempotency_key="order-9633"), headers=AUTH
    )
    assert other.status_code == 409, other.text
    assert runtime.notifications.count_by_status() == {"queued": 1}
    assert dispatched(broker) == [[created["id"]]]


# -- batches -----------------------------------------------------------------------------------


def test_a_batch_of_1000_with_bad_items_stores_the_good_and_names_each_bad_field(
    api_client: TestClient, runtime: Runtime, broker: redis.Redis
) -> None:
    bad = {
        7: ({"provider": "ihuyi", "to": "12345", "content": TEXT}, "to"),
        123: ({"provider": "nobody", "to": "13800138000", "content": TEXT}, "provider"),
        500: ({"provider": "ihuyi", "to": "13800138000"}, "content"),
        998: ({"provider": "ihuyi", "to": "13800138000", "content": TEXT, "colour": 1}, "colour"),
        999: (
            {
                "provider": "jumdata",
                "to": "13800138000",
                "template": "1001",
                "options": {"playTimes": 99},
            },
            "options.playTimes",
        ),
    }
    items = [bad[i][0] if i in bad else one(f"138{i:08d}") for i in range(1000)]
    answer = api_client.post("/v1/notifications:batch", json={"notifications": items}, headers=AUTH)
    assert answer.status_code == 200, answer.text[:500]
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (995, 5)

    good_ids = []
    for index, item in enumerate(result["items"]):
        assert item["index"] == index
        if index in bad:
            assert item["id"] is None
            assert [e["field"] for e in item["errors"]] == [bad[index][1]], item
        else:
            assert item["errors"] is None
            assert (item["status"], item["created"]) == ("queued", True)
            good_ids.append(item["id"])
    assert len(set(good_ids)) == 995
    assert runtime.notifications.count_by_status() == {"queued": 995}
    stored = {runtime.notifications.get(i).to for i in good_ids}
    assert "+8612345" not in stored and len(stored) == 995

    messages = dispatched(broker)
    assert len(messages) == math.ceil(995 / runtime.settings.dispatch_batch)
    assert sorted(i for message in messages for i in message) == sorted(good_ids)


def test_a_batch_of_more_than_1000_is_refused_whole_and_stores_nothing(
    api_client: TestClient, runtime: Runtime, broker: redis.Redis
) -> None:
    items = [one(f"138{i:08d}") for i in range(1001)]
    answer = api_client.post("/v1/notifications:batch", json={"notifications": items}, headers=AUTH)
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["notifications"]
    assert runtime.notifications.count_by_status() == {}
    assert broker.llen(DISPATCH_QUEUE) == 0


# -- reading one back --------------------------------------------------------------------------


def test_a_notification_reads_back_masked_with_its_history(
    api_client: TestClient, runtime: Runtime
) -> None:
    created = api_client.post("/v1/notifications", json=one("+86 138 0013 8000"), headers=AUTH)
    notification_id = created.json()["id"]
    store = runtime.notifications
    store.transition(
        [
            Change(
                notification_id,
                Status.SENDING,
                expect=Expect.row(store.get(notification_id)),
                count_attempt=True,
            )
        ]
    )
    store.transition(
        [
            Change(
                notification_id,
                Status.SENT,
                expect=Expect.row(store.get(notification_id)),
                values={"provider_ref": "V-42"},
            )
        ]
    )

    answer = api_client.get(f"/v1/notifications/{notification_id}", headers=AUTH)
    assert answer.status_code == 200
    view = answer.json()
    assert view["to"] == "138****8000"
    assert "13800138000" not in re.sub(r"\D", "", answer.text.replace(str(notification_id), ""))
    assert (view["status"], view["attempts"], view["provider_ref"]) == ("sent", 1, "V-42")
    assert [(e["from"], e["to"]) for e in view["events"]] == [
        ("queued", "sending"),
        ("sending", "sent"),
    ]
    assert all(e["at"].endswith("Z") for e in view["events"])

    for missing in (notification_id + 1, 0, -1, 2**63, 10**30):
        assert api_client.get(f"/v1/notifications/{missing}", headers=AUTH).status_code == 404


# -- operations --------------------------------------------------------------------------------


def test_healthz_and_readyz_are_200_when_redis_and_the_store_answer(api_client: TestClient) -> None:
    assert api_client.get("/healthz").json() == {"status": "ok"}
    answer = api_client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "store": "ok", "redis": "ok"}


def test_readyz_is_503_naming_redis_when_redis_is_unreachable_and_healthz_stays_200(
    database_url: str,
) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    runtime = Runtime.build(embedded_settings(database_url, closed))
    try:
        with TestClient(create_app(runtime.settings, runtime)) as api_client:
            ready = api_client.get("/readyz")
            alive = api_client.get("/healthz")
    finally:
        runtime.close()
    assert alive.status_code == 200
    assert ready.status_code == 503
    assert ready.headers["Retry-After"].isdigit()
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["store"] == "ok"
    assert body["redis"].startswith("unavailable: ")


def test_metrics_count_the_ledger_by_provider_and_status(
    api_client: TestClient, runtime: Runtime
) -> None:
    for i in range(3):
        api_client.post("/v1/notifications", json=one(f"1380013800{i}"), headers=AUTH)
    voice = {"provider": "apispace-voice", "to": "13800138009", "template": "123456"}
    sent = api_client.post("/v1/notifications", json=voice, headers=AUTH).json()["id"]
    runtime.notifications.transition(
        [Change(sent, Status.SENDING, expect=Expect.row(runtime.notifications.get(sent)))]
    )
    runtime.notifications.transition(
        [
            Change(
                sent,
                Status.SENT,
                expect=Expect.row(runtime.notifications.get(sent)),
                values={"provider_ref": "c"},
            )
        ]
    )

    answer = api_client.get("/metrics")
    assert answer.status_code == 200
    gauges = {
        (m["provider"], m["status"]): float(m["value"])
        for m in re.finditer(
            r'^notifyq_notifications\{provider="(?P<provider>[^"]+)",status="(?P<status>[^"]+)"\} (?P<value>\S+)$',
            answer.text,
            re.MULTILINE,
        )
    }
    assert gauges == {("ihuyi", "queued"): 3.0, ("apispace-voice", "sent"): 1.0}
    assert "# TYPE notifyq_notifications gauge" in answer.text
