"""Priority classes at the doors (README "Codes first"), in process over a real
store and a real Redis: ``priority`` on ``POST /v1/notifications`` and ``enqueue()`` is
stored, shown and decides the broker queue; a bad value is a 422 naming the field with
nothing stored; the same idempotency key with another class is another request (409);
a verification's notifications are urgent and a campaign's rows bulk, whatever asked."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import warnings
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from providers.base import InvalidRequest
from store.schema import Notification
from tasks import latency
from tasks.campaigns.intake import CampaignSpec, import_campaign
from tasks.campaigns.release import fan_out
from tasks.enqueue import enqueue, enqueue_many
from tasks.publish import flush_dispatch
from tasks.requests import SendRequest
from tasks.runtime import Runtime
from tasks.verifications import create_verification
from tests.conftest import TEST_CREDENTIALS
from tests.verifications.test_api import verifying
from worker.queues import BULK_QUEUE, DISPATCH_QUEUES, NORMAL_QUEUE, URGENT_QUEUE

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[1]}"}
TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """An embedded runtime with verification codes on."""
    return make_runtime(**verifying())


def queued_ids(queue: str, runtime: Runtime) -> list[int]:
    """Every id in ``queue``'s dispatch messages."""
    ids: list[int] = []
    for raw in runtime.redis.lrange(queue, 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids += args[0]
    return sorted(ids)


def priority_of(runtime: Runtime, notification_id: int) -> str:
    row = runtime.notifications.get(notification_id)
    assert row is not None
    return str(row.priority)


def body(number: str = "13800138000", **extra: object) -> dict[str, object]:
    return {"provider": "ihuyi", "to": number, "content": TEXT, **extra}


def test_each_class_is_stored_shown_and_queued_on_its_own_queue(
    api_client: TestClient, runtime: Runtime
) -> None:
    made: dict[str, int] = {}
    for index, priority in enumerate(("urgent", "normal", "bulk", None)):
        extra = {} if priority is None else {"priority": priority}
        answer = api_client.post(
            "/v1/notifications", json=body(f"1380013800{index}", **extra), headers=AUTH
        )
        assert answer.status_code == 202, answer.text
        made[priority or "unsaid"] = answer.json()["id"]
    flush_dispatch()

    for asked, notification_id in made.items():
        wanted = "normal" if asked == "unsaid" else asked
        assert priority_of(runtime, notification_id) == wanted
        view = api_client.get(f"/v1/notifications/{notification_id}", headers=AUTH).json()
        assert view["priority"] == wanted
    assert queued_ids(URGENT_QUEUE, runtime) == [made["urgent"]]
    assert queued_ids(NORMAL_QUEUE, runtime) == sorted([made["normal"], made["unsaid"]])
    assert queued_ids(BULK_QUEUE, runtime) == [made["bulk"]]


@pytest.mark.parametrize("bad", ["high", "URGENT ", 3, ""])
def test_a_bad_priority_is_a_422_naming_the_field_and_nothing_is_stored_or_queued(
    api_client: TestClient, runtime: Runtime, bad: object
) -> None:
    answer = api_client.post("/v1/notifications", json=body(priority=bad), headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["priority"]
    flush_dispatch()
    with runtime.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(Notification)).scalar_one() == 0
    assert sum(int(runtime.redis.llen(q)) for q in DISPATCH_QUEUES.values()) == 0


def test_the_same_idempotency_key_with_another_class_is_another_request(
    api_client: TestClient,
) -> None:
    first = api_client.post(
        "/v1/notifications", json=body(idempotency_key="k-1", priority="urgent"), headers=AUTH
    )
    assert first.status_code == 202, first.text
    same = api_client.post(
        "/v1/notifications", json=body(idempotency_key="k-1", priority="urgent"), headers=AUTH
    )
    assert same.status_code == 200, same.text
    assert same.json()["id"] == first.json()["id"]
    other = api_client.post("/v1/notifications", json=body(idempotency_key="k-1"), headers=AUTH)
    assert other.status_code == 409, other.text
    assert other.json()["errors"][0]["field"] == "idempotency_key"


def test_enqueue_takes_a_class_and_names_the_field_of_a_bad_one(runtime: Runtime) -> None:
    done = enqueue("ihuyi", "13800138000", content=TEXT, priority="urgent", runtime=runtime)
    flush_dispatch()
    assert priority_of(runtime, done.id) == "urgent"
    assert queued_ids(URGENT_QUEUE, runtime) == [done.id]
    with pytest.raises(InvalidRequest) as caught:
        enqueue("ihuyi", "13800138001", content=TEXT, priority="soon", runtime=runtime)
    assert [e.field for e in caught.value.errors] == ["priority"]


def test_a_verifications_notifications_are_urgent(runtime: Runtime) -> None:
    created = create_verification("13800138000", "sms", voice_after=30, runtime=runtime)
    ids = [i for i in (created.notification_id, created.fallback_id) if i is not None]
    assert len(ids) == 2  # the code by SMS, and its voice fallback
    assert {priority_of(runtime, i) for i in ids} == {"urgent"}
    flush_dispatch()
    assert queued_ids(URGENT_QUEUE, runtime) == [created.notification_id]


def test_a_campaigns_rows_are_bulk_and_released_on_the_bulk_queue(runtime: Runtime) -> None:
    spec = CampaignSpec(provider="ihuyi", content="您好{name}，明天上午十点开会。")
    csv = "mobile,name\n" + "".join(f"1380013{i:04d},客户{i}\n" for i in range(5))
    imported = import_campaign(runtime, spec, io.StringIO(csv))
    fan_out(runtime)  # starts it and releases its rows
    with runtime.db.read() as conn:
        ids = list(
            conn.execute(select(Notification.id).where(Notification.campaign_id == imported.id))
            .scalars()
            .all()
        )
    assert len(ids) == 5
    assert {priority_of(runtime, i) for i in ids} == {"bulk"}
    assert queued_ids(BULK_QUEUE, runtime) == sorted(ids)
    assert queued_ids(NORMAL_QUEUE, runtime) == queued_ids(URGENT_QUEUE, runtime) == []


def test_the_operator_page_shows_each_lanes_depth_and_current_p99(
    api_client: TestClient, runtime: Runtime
) -> None:
    admin = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}
    for number in ("13800138000", "13800138001"):
        sent = api_client.post(
            "/v1/notifications", json=body(number, priority="urgent"), headers=AUTH
        )
        assert sent.status_code == 202, sent.text
    flush_dispatch()
    latency.record(runtime, [runtime.notifications.get(sent.json()["id"])], time.time())
    page = api_client.get("/ui", headers=admin)
    assert page.status_code == 200, page.text
    urgent = re.search(r'<tr data-lane="urgent">(.*?)</tr>', page.text)
    assert urgent is not None, page.text
    assert 'data-depth="2"' in urgent[1]  # codes are published as they come: two messages
    assert " ms</td><td>1</td>" in urgent[1]  # one call measured, its p99 shown
    assert (
        'data-lane="bulk"><th>bulk</th><td><code>notifyq.bulk</code></td><td data-depth="0">'
        in (page.text)
    )


def test_a_group_of_several_classes_is_published_per_class_and_answered_once(
    runtime: Runtime,
) -> None:
    """The API's group commit hands one group of requests to the publishers: each class
    to its own queue, and the group's ``then`` once, after all of them are out."""
    answered = threading.Event()
    calls: list[int] = []
    requests = [
        SendRequest("ihuyi", f"1380013800{i}", content=TEXT, priority=p)
        for i, p in enumerate(["bulk", "urgent", "normal", "urgent"])
    ]
    made = enqueue_many(requests, runtime=runtime, then=lambda: (calls.append(1), answered.set()))
    assert answered.wait(10)
    ids = [m.id for m in made]  # type: ignore[union-attr]
    assert queued_ids(URGENT_QUEUE, runtime) == sorted([ids[1], ids[3]])
    assert queued_ids(NORMAL_QUEUE, runtime) == [ids[2]]
    assert queued_ids(BULK_QUEUE, runtime) == [ids[0]]
    flush_dispatch()
    assert calls == [1]
