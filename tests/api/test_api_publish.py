"""Single ``POST /v1/notifications`` from many clients at once publish the gathered way
(api/coalesce.py on tasks/publish.py): each answer comes once its row is committed,
every id goes out in exactly one dispatch message, and the requests of a moment share
messages; a code (``urgent``) is out before its answer. Real Redis, real SQLite (and
PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import redis

from api.app import create_app
from tasks.enqueue import enqueue_many
from tasks.publish import flush_dispatch
from tasks.requests import SendRequest
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS, dispatch_messages
from worker.queues import DISPATCH_QUEUES

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}
TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"
CLIENTS = 24
EACH = 5


def test_concurrent_single_posts_are_answered_once_committed_and_share_messages(
    runtime: Runtime, redis_url: str
) -> None:
    broker = redis.Redis.from_url(redis_url)
    app = create_app(runtime.settings, runtime)
    uncommitted: list[int] = []
    ids: list[int] = []

    async def client(c: int, http: httpx.AsyncClient) -> None:
        for i in range(EACH):
            body = {"provider": "ihuyi", "to": f"138{c:02d}{i:06d}", "content": TEXT}
            answer = await http.post("/v1/notifications", json=body, headers=AUTH)
            assert answer.status_code == 202, answer.text
            notification_id = answer.json()["id"]
            ids.append(notification_id)
            # an answer means committed (the publish follows within the linger)
            if runtime.notifications.get(notification_id) is None:
                uncommitted.append(notification_id)

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            await asyncio.gather(*(client(c, http) for c in range(CLIENTS)))

    asyncio.run(main())

    assert uncommitted == []
    assert len(set(ids)) == CLIENTS * EACH
    flush_dispatch()  # the API process's publisher: what it gathered goes out
    sent = dispatch_messages(broker)
    assert sorted(i for m in sent for i in m) == sorted(ids)  # each id in one message
    assert all(len(m) <= runtime.settings.dispatch_batch for m in sent)
    assert len(sent) < len(ids)  # gathered: the requests of a moment share a message
    assert runtime.notifications.count_by_status() == {"queued": CLIENTS * EACH}


def test_a_code_is_published_before_it_is_answered(runtime: Runtime, redis_url: str) -> None:
    """Codes do not linger: an ``urgent`` post's id is in the broker when it is answered,
    while a ``normal`` one's may still be gathering."""
    broker = redis.Redis.from_url(redis_url)
    app = create_app(runtime.settings, runtime)

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        out: list[int] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            for i in range(5):
                body = {
                    "provider": "ihuyi",
                    "to": f"1390000{i:04d}",
                    "content": TEXT,
                    "priority": "urgent",
                }
                answer = await http.post("/v1/notifications", json=body, headers=AUTH)
                assert answer.status_code == 202, answer.text
                notification_id = answer.json()["id"]
                urgent = dispatch_messages(broker, DISPATCH_QUEUES["urgent"])
                published = {i for m in urgent for i in m}
                if notification_id not in published:
                    out.append(notification_id)
        return out

    assert asyncio.run(main()) == []


def test_then_is_called_once_whatever_there_is_to_publish(runtime: Runtime) -> None:
    """Queued ids (after the publish), a repeated key and a bad request (nothing to
    publish), a deferred one (the deferred set, no message): ``then`` exactly once."""
    calls: list[float] = []
    done = threading.Event()

    def then() -> None:
        calls.append(time.monotonic())
        done.set()

    cases = [
        [SendRequest(provider="ihuyi", to="13800138000", content=TEXT, idempotency_key="k")],
        [SendRequest(provider="ihuyi", to="13800138000", content=TEXT, idempotency_key="k")],
        [SendRequest(provider="ihuyi", to="12345", content=TEXT)],
        [
            SendRequest(
                provider="ihuyi", to="13800138001", content=TEXT, not_before=time.time() + 3600
            )
        ],
        [],
    ]
    kinds: list[list[str]] = []
    for requests in cases:
        calls.clear()
        done.clear()
        results = enqueue_many(requests, runtime=runtime, then=then)
        assert done.wait(5)
        # every publish handed over or under way has finished (its callbacks called): a
        # second call would have come from one of them — an event, not a pause
        flush_dispatch()
        assert len(calls) == 1, requests
        kinds.append(
            [type(r).__name__ + ("+" if getattr(r, "created", False) else "") for r in results]
        )
    assert kinds == [["Enqueued+"], ["Enqueued"], ["InvalidRequest"], ["Enqueued+"], []]
