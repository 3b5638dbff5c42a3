"""enqueue() one notification at a time, from many threads: each call returns only once
its row is committed, with the answer a call of its own would give, while the calls share
transactions and their ids leave in gathered dispatch messages (tasks/enqueue.py,
tasks/publish.py). Real Redis, real SQLite (and PostgreSQL when configured)."""

from __future__ import annotations

import threading

import redis
from sqlalchemy import func, select

from providers.base import InvalidRequest
from store import Status
from store.schema import Notification
from tasks.enqueue import enqueue
from tasks.publish import flush_dispatch
from tasks.runtime import Runtime
from tests.conftest import dispatch_messages
from worker.queues import DISPATCH_QUEUE

TEXT = "您的验证码是1234。"
N = Notification.__table__
THREADS = 8
EACH = 40


def test_threads_enqueueing_singly_share_commits_and_messages_and_each_sees_its_row(
    runtime: Runtime, redis_url: str
) -> None:
    ids: list[int] = []
    missing: list[int] = []
    lock = threading.Lock()

    def produce(t: int) -> None:
        for i in range(EACH):
            done = enqueue("ihuyi", f"139{t:02d}{i:06d}", content=TEXT, runtime=runtime)
            assert done.created and done.status is Status.QUEUED
            if runtime.notifications.get(done.id) is None:  # committed before the return
                missing.append(done.id)
            with lock:
                ids.append(done.id)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert missing == []
    assert len(set(ids)) == THREADS * EACH
    flush_dispatch()
    messages = dispatch_messages(redis.Redis.from_url(redis_url))
    published = [i for message in messages for i in message]
    assert sorted(published) == sorted(ids)  # each id in exactly one message
    assert all(len(m) <= runtime.settings.dispatch_batch for m in messages)
    # gathered: fewer messages than notifications; shared: fewer transactions than calls
    # (the rows of one transaction share its ``created_at``)
    assert len(messages) < len(ids)
    with runtime.db.read() as conn:
        stamps = conn.execute(select(func.count(func.distinct(N.c.created_at)))).scalar_one()
    assert stamps < len(ids)


def test_a_bad_request_among_concurrent_ones_fails_alone_and_a_repeated_key_answers_once(
    runtime: Runtime, redis_url: str
) -> None:
    start = threading.Barrier(THREADS)
    answers: dict[int, object] = {}

    def produce(t: int) -> None:
        start.wait()
        try:
            if t == 0:
                answers[t] = enqueue("ihuyi", "12345", content=TEXT, runtime=runtime)
            else:
                answers[t] = enqueue(
                    "ihuyi", "13800138000", content=TEXT, idempotency_key="once", runtime=runtime
                )
        except InvalidRequest as exc:
            answers[t] = exc

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert isinstance(answers.pop(0), InvalidRequest)
    assert len({a.id for a in answers.values()}) == 1  # type: ignore[attr-defined]
    assert sum(a.created for a in answers.values()) == 1  # type: ignore[attr-defined]
    assert runtime.notifications.count_by_status() == {"queued": 1}
    flush_dispatch()
    assert [i for m in dispatch_messages(redis.Redis.from_url(redis_url)) for i in m] == [
        next(iter(answers.values())).id  # type: ignore[attr-defined]
    ]


def test_a_lone_enqueue_is_published_within_the_linger_without_a_flush(
    runtime: Runtime, redis_url: str
) -> None:
    done = enqueue("ihuyi", "13800138000", content=TEXT, runtime=runtime)
    client = redis.Redis.from_url(redis_url)
    deadline = threading.Event()
    for _ in range(200):  # the linger is 10 ms; allow a loaded machine 2 s
        if client.llen(DISPATCH_QUEUE):
            break
        deadline.wait(0.01)
    assert dispatch_messages(client) == [[done.id]]
