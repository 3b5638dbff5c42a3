"""Group commit on the event loop: what requests want written while one group is being
written is written together by the next one (store/group_commit.py holds the queue and
the one-by-one retry of a failed group; here its leader is a drainer task of the event
loop and its followers wait on futures). :class:`GroupWriter` serves any write that
answers per payload (the receipt pushes, api/callbacks.py); :class:`EnqueueCoalescer`
serves single enqueues, which are also published before they are answered.

One store-and-publish per request would pay, per request, a transaction, a
``BEGIN IMMEDIATE`` on SQLite's single writer, a dispatch message and its task-sent
event, and a thread hand-off: a fixed cost per call, not per notification (the batch
route stores ~9,000 a second; ``bench/api.py``). So the requests of one moment share
one call: no timer, no added wait — a request that finds nothing running starts a call
at once; those that arrive meanwhile form the next call. Each caller still gets its own
answer, and only after the row is committed and the dispatch published. The answers are
the ones sequential calls would give: ``enqueue_many`` validates each request on its
own, and an idempotency key repeated within one call answers the later request with the
first one's id.

If the shared call fails (a database error), each of its requests is tried again on
its own, so one request's failure is never another's.

Publishing is gathered (``tasks/publish.py``, as for ``enqueue()``): a call returns once
its rows are committed and hands their ids to the process's publisher, which sends what
arrived within ``NOTIFYQ_PUBLISH_LINGER`` (10 ms) as one ``dispatch(ids)`` message of up
to ``NOTIFYQ_DISPATCH_BATCH`` ids. The requests of a call are answered when their ids
are out — so an answer still means *committed and published* — but the next call is
stored meanwhile, not after: the groups of one linger leave in one message, and a
worker pays one ``sending`` and one outcome write per message, not per group (with
workers running, their writes and the API's share SQLite's one writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

from providers.base import InvalidRequest
from store import Enqueued
from store.group_commit import GroupQueue, Settled, write_group
from tasks.requests import SendRequest

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

Result = Enqueued | InvalidRequest
#: ``(requests, then)``: store and hand off; ``then()`` once their ids are published
EnqueueMany = Callable[[Sequence[SendRequest], Callable[[], None]], list[Result]]

#: at most this many requests in one transaction (a few ms of writing on SQLite)
MAX_GROUP = 500
#: answer anyway after this long without word from the publisher (the rows are committed
#: and stamped: the sweeper re-drives any id whose message never left)
PUBLISH_WAIT = 5.0


class LoopGroups(Generic[P, R]):
    """The event loop's side of group commit: ``await submit(payload)`` from any request
    handler; what arrives while a group is written forms the next one. A drainer task
    leads (store/group_commit.py's :class:`GroupQueue`), each caller waits on a future,
    and a group costs one hand-off to a pool thread, not one per request.

    :meth:`_run` writes a group and settles its callers' futures (:func:`settle`)."""

    def __init__(self, max_group: int = MAX_GROUP) -> None:
        self._queue: GroupQueue[tuple[P, asyncio.Future[R]]] = GroupQueue(max_group)
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, payload: P) -> R:
        """This payload's answer, once its group is written (or its own error)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[R] = loop.create_future()
        lead = self._queue.join((payload, answer))
        drainer = self._drainer
        # one drainer at a time; a new one when none runs, or when the last one belonged
        # to an event loop that is gone (a test client may run each request in a loop of
        # its own) or stopped
        if lead or drainer is None or drainer.done() or drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
            self._drainer.add_done_callback(_log_crash)
        return await answer

    async def _drain(self) -> None:
        while True:
            group = self._queue.take()
            if group:
                try:
                    await self._run(group)
                except asyncio.CancelledError:  # shutting down: the callers hear it too
                    for _, answer in group:
                        answer.cancel()
                    raise
            if self._queue.finish() is None:
                return

    async def _run(self, group: list[tuple[P, asyncio.Future[R]]]) -> None:
        raise NotImplementedError


class GroupWriter(LoopGroups[P, R]):
    """``run(payloads)`` on a pool thread, one result per payload in one transaction; a
    failed group is written again one payload at a time (``write_group``), so each
    caller gets the answer its own write would have given."""

    def __init__(
        self,
        run: Callable[[list[P]], list[R]],
        *,
        what: str,
        max_group: int = MAX_GROUP,
        after: Callable[[list[R]], None] | None = None,
        fails_all: Callable[[Exception], bool] | None = None,
    ) -> None:
        super().__init__(max_group)
        self._write = partial(write_group, run, what=what, after=after, fails_all=fails_all)

    async def _run(self, group: list[tuple[P, asyncio.Future[R]]]) -> None:
        settled = await run_in_threadpool(self._write, [payload for payload, _ in group])
        for (_, answer), outcome in zip(group, settled, strict=True):
            settle(answer, outcome)


class EnqueueCoalescer(LoopGroups[SendRequest, Result]):
    """Per event loop (one per app): ``await enqueue(request)`` from any request handler."""

    def __init__(
        self,
        enqueue_many: EnqueueMany,
        max_group: int = MAX_GROUP,
        *,
        fails_all: Callable[[Exception], bool] | None = None,
    ) -> None:
        """``fails_all``: an error that every request of a group would meet on its own
        (the store or Redis away), answered to all at once instead of retried one by one."""
        super().__init__(max_group)
        self._enqueue_many = enqueue_many
        self._fails_all = fails_all

    async def enqueue(self, request: SendRequest) -> Result:
        """This request's answer, once it is committed and published (or refused)."""
        return await self.submit(request)

    async def _run(self, group: list[tuple[SendRequest, asyncio.Future[Result]]]) -> None:
        published = _Published(asyncio.get_running_loop())

        def attempt(requests: list[SendRequest]) -> list[Result]:  # a pool thread
            results = self._enqueue_many(requests, published.heard)
            published.calls += 1
            return results

        requests = [request for request, _ in group]
        settled = await run_in_threadpool(
            partial(write_group, fails_all=self._fails_all), attempt, requests, what="enqueues"
        )
        answered = [(waiting, s) for (_, waiting), s in zip(group, settled, strict=True)]
        for waiting, failed in answered:
            if failed.error is not None:
                settle(waiting, failed)

        def answer(_: object = None) -> None:
            for waiting, stored in answered:
                if stored.error is None:
                    settle(waiting, stored)

        # answered once published; the drainer goes on to store the next group meanwhile
        published.then(answer)


class _Published:
    """When every ``enqueue_many`` call of one group has heard from the publisher.

    ``calls`` is counted in the pool thread that writes the group, and read once that
    write has been awaited; what the publisher says arrives on the event loop's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()
        #: ``enqueue_many`` calls that returned: each calls ``then`` exactly once
        self.calls = 0
        self._heard = 0
        self._expected: int | None = None  # known once the group is written

    def heard(self) -> None:
        """``then`` of one call (the publisher's thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._hear)

    def _hear(self) -> None:
        self._heard += 1
        self._check()

    def then(self, answer: Callable[[object], None]) -> None:
        """``answer`` once every call that returned is published, or after
        ``PUBLISH_WAIT``."""
        self._expected = self.calls
        self._future.add_done_callback(answer)
        self._check()
        if not self._future.done():
            self._loop.call_later(PUBLISH_WAIT, _resolve, self._future)

    def _check(self) -> None:
        if self._expected is not None and self._heard >= self._expected:
            _resolve(self._future)


def _resolve(published: asyncio.Future[None]) -> None:
    if not published.done():
        published.set_result(None)


def settle(answer: asyncio.Future[R], settled: Settled[R]) -> None:
    """Tell one caller its answer: its result, or its own write's error."""
    if answer.done() or answer.get_loop().is_closed():  # the caller is gone: nothing to tell
        return
    if settled.error is not None:
        answer.set_exception(settled.error)
    else:
        answer.set_result(settled.result)  # type: ignore[arg-type]


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the enqueue coalescer stopped", exc_info=task.exception())
