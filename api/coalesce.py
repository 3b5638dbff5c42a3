"""Group commit on the event loop: what requests want written while one group is being
written is written together by the next one (store/group_commit.py holds the queue and
the one-by-one retry of a failed group; here its leader is a drainer task of the event
loop and its followers wait on futures). :class:`GroupWriter` serves any write that
answers per payload (the receipt pushes, api/callbacks.py); :class:`EnqueueCoalescer`
serves single enqueues.

One store per request would pay, per request, a transaction, a ``BEGIN IMMEDIATE`` on
SQLite's single writer and a thread hand-off: a fixed cost per call, not per
notification (the batch route stores ~9,000 a second; ``bench/api.py``). So the
requests of one moment share one call: no timer, no added wait — a request that finds
nothing running starts a call at once; those that arrive meanwhile form the next call.
Each caller still gets its own answer, and only after its row is committed. The answers
are the ones sequential calls would give: ``enqueue_many`` validates each request on its
own, and an idempotency key repeated within one call answers the later request with the
first one's id.

If the shared call fails (a database error), each of its requests is tried again on
its own, so one request's failure is never another's.

Publishing is gathered (``tasks/publish.py``, as for ``enqueue()``): a call hands its
committed ids to the process's publisher, which sends what arrived within
``NOTIFYQ_PUBLISH_LINGER`` as one ``dispatch(ids)`` message of up to
``NOTIFYQ_DISPATCH_BATCH`` ids, and the requests are answered at the commit, as
``enqueue()`` returns: a 202 means *committed*, and the sweeper re-drives an id whose
message never left (a crash between the commit and the publish, Redis away), as for
any lost hand-off. Answering only once the ids were out made every post wait out the
linger: 16 clients posting one at a time were held to ~600 posts a second, and a
linger long enough to fill a worker's messages was out of reach. Answered at the
commit, the posts stop waiting for the linger, and a longer linger makes bigger
messages, so a worker pays one ``sending`` and one outcome write, and Celery its
per-message cost, for more notifications (``bench/api.py --e2e-only``; the README's
figures). Codes do not linger at all (tasks/publish.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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
#: ``(requests, then=…)``: store and hand the ids to the publisher; ``then()`` once out
EnqueueMany = Callable[..., list[Result]]

#: at most this many requests in one transaction (a few ms of writing on SQLite)
MAX_GROUP = 500


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


class EnqueueCoalescer(GroupWriter[SendRequest, Result]):
    """Per event loop (one per app): ``await enqueue(request)`` from any request handler.

    ``fails_all``: an error that every request of a group would meet on its own (the
    store or Redis away), answered to all at once instead of retried one by one."""

    def __init__(
        self,
        enqueue_many: EnqueueMany,
        max_group: int = MAX_GROUP,
        *,
        fails_all: Callable[[Exception], bool] | None = None,
    ) -> None:
        store = partial(enqueue_many, then=_published)
        super().__init__(store, what="enqueues", max_group=max_group, fails_all=fails_all)

    async def enqueue(self, request: SendRequest) -> Result:
        """This request's answer, once it is committed (or refused)."""
        return await self.submit(request)


def _published() -> None:
    """The publisher's word that a group's ids are out: nobody waits for it (the answer
    went at the commit; a lost publish is the sweeper's)."""


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
