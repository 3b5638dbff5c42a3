"""store/group_commit.py: the leader/follower queue both the workers' threads and the API's
coroutines use. Real threads and a real event loop; the "write" is a plain function that
records what it was given, so each test can see every group that was formed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from api.coalesce import EnqueueCoalescer, GroupWriter
from providers.base import FieldError, InvalidRequest
from store import Enqueued, Status
from store.group_commit import GroupQueue, Groups, Settled, write_group
from tasks.requests import SendRequest
from tests.services import wait_until

CALLERS = 12


class Bad(Exception):
    """What the recording write raises for a group holding a payload it refuses."""


class Recorder:
    """A write that answers ``payload * 10`` for each payload, raises :class:`Bad` for a
    group holding a negative one, and, while ``hold`` is clear, keeps its first group
    waiting (so the others queue up behind it)."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.writers: list[int] = []
        self.hold = threading.Event()
        self.hold.set()
        self.lock = threading.Lock()

    def __call__(self, rt: Any, payloads: list[int]) -> list[int]:
        with self.lock:
            first = not self.groups
            self.groups.append(list(payloads))
            self.writers.append(threading.get_ident())
        if first:
            assert self.hold.wait(30)
        if any(p < 0 for p in payloads):
            raise Bad(f"refused {payloads}")
        return [p * 10 for p in payloads]


def in_threads(work: Callable[[int], Any], count: int) -> tuple[dict[int, Any], list[Any]]:
    """``work(i)`` for i in range(count), each in a thread of its own; (answers by i,
    errors)."""
    answers: dict[int, Any] = {}
    errors: list[Any] = []

    def run(i: int) -> None:
        try:
            answers[i] = work(i)
        except Exception as exc:
            errors.append((i, exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers, errors


# -- the queue and the one-by-one retry, on their own ------------------------------------


def test_the_first_to_join_leads_and_the_next_group_is_led_by_its_first() -> None:
    queue: GroupQueue[str] = GroupQueue(max_group=2)
    assert queue.join("a") is True
    assert queue.join("b") is False and queue.join("c") is False
    assert queue.take() == ["a", "b"]
    assert queue.finish() == "c"  # c leads the next group
    assert queue.take() == ["c"]
    assert queue.finish() is None
    assert queue.join("d") is True  # nothing running: d leads at once
    assert len(queue) == 1


def test_a_failed_group_is_written_again_one_by_one() -> None:
    written: list[list[int]] = []
    after: list[list[int]] = []

    def run(payloads: list[int]) -> list[int]:
        written.append(payloads)
        if -1 in payloads:
            raise Bad("no")
        return [p + 1 for p in payloads]

    settled = write_group(run, [1, -1, 3], what="things", after=after.append)
    assert written == [[1, -1, 3], [1], [-1], [3]]
    assert [s.result for s in settled] == [2, None, 4]
    assert [type(s.error) for s in settled] == [type(None), Bad, type(None)]
    assert after == [[2], [4]]  # after each write that succeeded, never the failed one


def test_a_failure_after_the_write_is_logged_never_a_second_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written: list[list[int]] = []

    def run(payloads: list[int]) -> list[int]:
        written.append(payloads)
        return payloads

    def after(results: list[int]) -> None:
        raise RuntimeError("the publisher is gone")

    assert write_group(run, [1, 2], what="things", after=after) == [Settled(1), Settled(2)]
    assert written == [[1, 2]]
    assert "after a group of 2 things was written" in caplog.text


# -- threads ----------------------------------------------------------------------------


def release_once_queued(record: Recorder, groups: Groups[int, int]) -> threading.Thread:
    """Hold the first group's write until every other caller waits behind it."""
    record.hold.clear()

    def release() -> None:
        wait_until(lambda: len(groups.queue) == CALLERS - 1, 30, what="the others to queue")
        record.hold.set()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def test_threads_arriving_during_a_write_share_the_next_group_each_with_its_own_answer() -> None:
    record = Recorder()
    groups: Groups[int, int] = Groups(record, what="things", max_group=100)
    release = release_once_queued(record, groups)
    answers, errors = in_threads(lambda i: groups.submit(None, i), CALLERS)
    release.join()
    assert errors == []
    assert answers == {i: i * 10 for i in range(CALLERS)}
    # the first call alone (it found nothing running), then everyone who came meanwhile
    assert [len(g) for g in record.groups] == [1, CALLERS - 1]
    assert sorted(p for g in record.groups for p in g) == list(range(CALLERS))
    assert (groups.groups, groups.served) == (2, CALLERS)


def test_no_thread_writes_more_than_one_group_for_others() -> None:
    """A group of at most 3: the leader of each group is one of its own members."""
    record = Recorder()
    groups: Groups[int, int] = Groups(record, what="things", max_group=3)
    members: dict[int, int] = {}

    def submit(i: int) -> int:
        members[threading.get_ident()] = i
        return groups.submit(None, i)

    release = release_once_queued(record, groups)
    answers, errors = in_threads(submit, CALLERS)
    release.join()
    assert errors == [] and len(answers) == CALLERS
    assert all(len(g) <= 3 for g in record.groups)
    for group, writer in zip(record.groups, record.writers, strict=True):
        assert members[writer] in group


def test_one_threads_bad_payload_fails_only_that_thread() -> None:
    record = Recorder()
    groups: Groups[int, int] = Groups(record, what="things", max_group=100)
    release = release_once_queued(record, groups)
    answers, errors = in_threads(lambda i: groups.submit(None, -i if i == 5 else i), CALLERS)
    release.join()
    assert [(i, type(e)) for i, e in errors] == [(5, Bad)]
    assert answers == {i: i * 10 for i in range(CALLERS) if i != 5}


# -- the API's coroutines ---------------------------------------------------------------


def request(i: int) -> SendRequest:
    return SendRequest(provider="ihuyi", to=f"+86138{i:08d}", content="x")


class Producer:
    """``enqueue_many`` as the coalescer calls it: one :class:`Enqueued` per request (an
    :class:`InvalidRequest` for a number ending in 99), a database error for any call
    holding a number ending in 13, and ``then()`` only when the test publishes."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.pending: list[Callable[[], None]] = []
        self.lock = threading.Lock()

    def __call__(self, requests: Any, then: Callable[[], None]) -> list[Any]:
        with self.lock:
            self.calls.append(len(requests))
        if any(r.to.endswith("13") for r in requests):
            raise ConnectionError("the database went away")
        with self.lock:
            self.pending.append(then)
        return [
            InvalidRequest([FieldError("to", "no")])
            if r.to.endswith("99")
            else Enqueued(int(r.to[-4:]), Status.QUEUED, created=True)
            for r in requests
        ]

    def publish(self) -> int:
        with self.lock:
            pending, self.pending = self.pending, []
        for then in pending:
            then()
        return len(pending)


def test_coroutines_share_a_call_and_are_answered_at_the_commit() -> None:
    """Answered once their call returns (committed), without waiting for the publisher:
    none of the calls' ``then`` has been called when every answer is in."""
    producer = Producer()
    coalescer = EnqueueCoalescer(producer)

    async def scenario() -> list[Any]:
        tasks = [asyncio.create_task(coalescer.enqueue(request(i))) for i in range(20, 40)]
        return list(await asyncio.gather(*tasks))

    answers = asyncio.run(scenario())
    assert [a.id for a in answers] == list(range(20, 40))
    assert producer.publish() == len(producer.calls)  # each call handed its ids on
    # the first request's call started at once; the others that came meanwhile shared one
    assert len(producer.calls) <= 2


def test_a_failed_call_is_retried_one_request_at_a_time() -> None:
    producer = Producer()
    coalescer = EnqueueCoalescer(producer)

    async def scenario() -> list[Any]:
        tasks = [asyncio.create_task(coalescer.enqueue(request(i))) for i in (1, 13, 99, 4)]
        while not all(t.done() for t in tasks):
            producer.publish()
            await asyncio.sleep(0.01)
        return [t.exception() or t.result() for t in tasks]

    first, failed, invalid, last = asyncio.run(scenario())
    assert isinstance(failed, ConnectionError)
    assert isinstance(invalid, InvalidRequest)
    assert (first.id, last.id) == (1, 4)
    # the group of four failed; then each alone: only 13 fails again
    assert producer.calls[-4:] == [1, 1, 1, 1]


async def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.005)


def test_an_error_every_request_would_meet_is_answered_to_all_at_once() -> None:
    """The store away: trying each request alone would only meet it again, one by one."""
    producer = Producer()
    coalescer = EnqueueCoalescer(producer, fails_all=lambda e: isinstance(e, ConnectionError))

    async def scenario() -> list[Any]:
        tasks = [asyncio.create_task(coalescer.enqueue(request(i))) for i in (20, 13, 21)]
        await asyncio.gather(*tasks, return_exceptions=True)
        return [t.exception() for t in tasks]

    errors = asyncio.run(scenario())
    assert all(isinstance(e, ConnectionError) for e in errors)
    assert producer.calls == [3]  # one call for the group, none for each alone


def test_write_group_answers_all_at_once_only_for_an_error_that_fails_all() -> None:
    calls: list[list[int]] = []

    def run(payloads: list[int]) -> list[int]:
        calls.append(payloads)
        raise Bad("away") if len(payloads) > 1 else ValueError("alone")

    settled = write_group(run, [1, 2], what="things", fails_all=lambda e: isinstance(e, Bad))
    assert [type(s.error) for s in settled] == [Bad, Bad] and calls == [[1, 2]]
    calls.clear()
    settled = write_group(run, [1, 2], what="things", fails_all=lambda e: False)
    assert [type(s.error) for s in settled] == [ValueError, ValueError]
    assert calls == [[1, 2], [1], [2]]


def test_a_group_writer_writes_what_arrives_meanwhile_together_and_retries_alone() -> None:
    """The receipt pushes' writer: the first payload is written at once; those arriving
    while it is held form one group; a group holding a refused payload is written again
    one at a time, and only that payload's caller hears the error."""
    recorder = Recorder()
    recorder.hold.clear()
    after: list[list[int]] = []
    writer: GroupWriter[int, int] = GroupWriter(
        lambda payloads: recorder(None, payloads), what="things", after=after.append
    )

    async def scenario() -> list[Any]:
        first = asyncio.create_task(writer.submit(1))
        await wait_for(lambda: len(recorder.groups) == 1)
        rest = [asyncio.create_task(writer.submit(p)) for p in (2, 3, -4, 5)]
        await asyncio.sleep(0.05)
        recorder.hold.set()
        tasks = [first, *rest]
        await asyncio.gather(*tasks, return_exceptions=True)
        return [t.exception() or t.result() for t in tasks]

    answers = asyncio.run(scenario())
    assert answers[:3] == [10, 20, 30] and answers[4] == 50
    assert isinstance(answers[3], Bad)
    assert recorder.groups == [[1], [2, 3, -4, 5], [2], [3], [-4], [5]]
    assert after == [[10], [20], [30], [50]]  # each written write, never the failed group
