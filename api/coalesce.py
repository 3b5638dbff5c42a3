"""Group commit for single enqueues: requests that arrive while one store-and-publish is
running are stored and published together by the next one.

``POST /v1/notifications`` used to run ``enqueue_many([one])`` in a thread of its own:
one transaction, one ``BEGIN IMMEDIATE`` on SQLite's single writer, one dispatch message
and its task-sent event per request, and a thread hand-off each — dozens of threads
queueing for the writer lock and the GIL. Under 48 requests in flight the API managed
~370 a second with a p99 of 240 ms (``bench/api.py``), and most of that was fixed cost
per call, not per notification: the batch route stores ~9,000 a second.

Here the requests of that moment share one call instead: no timer, no added wait — a
request that finds nothing running starts a call at once; those that arrive meanwhile
form the next call. Each caller still gets its own answer, and only after the row is
committed and the dispatch published. The answers are the ones sequential calls would
give: ``enqueue_many`` validates each request on its own, and an idempotency key
repeated within one call answers the later request with the first one's id.

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

from starlette.concurrency import run_in_threadpool

from providers.base import InvalidRequest
from store import Enqueued
from tasks.requests import SendRequest

log = logging.getLogger(__name__)

Result = Enqueued | InvalidRequest
#: ``(requests, then)``: store and hand off; ``then()`` once their ids are published
EnqueueMany = Callable[[Sequence[SendRequest], Callable[[], None]], list[Result]]

#: at most this many requests in one transaction (a few ms of writing on SQLite)
MAX_GROUP = 500
#: answer anyway after this long without word from the publisher (the rows are committed
#: and stamped: the sweeper re-drives any id whose message never left)
PUBLISH_WAIT = 5.0


class EnqueueCoalescer:
    """Per event loop (one per app): ``await enqueue(request)`` from any request handler."""

    def __init__(
        self,
        enqueue_many: EnqueueMany,
        max_group: int = MAX_GROUP,
        *,
        fails_all: Callable[[BaseException], bool] = lambda _: False,
    ) -> None:
        """``fails_all``: an error that every request of a group would meet on its own
        (the store or Redis away), answered to all at once instead of retried one by one."""
        self._enqueue_many = enqueue_many
        self._max_group = max_group
        self._fails_all = fails_all
        self._waiting: list[tuple[SendRequest, asyncio.Future[Result]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def enqueue(self, request: SendRequest) -> Result:
        """This request's answer, once it is committed and published (or refused)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((request, answer))
        drainer = self._drainer
        # one drainer at a time; a new one when the last has finished (or belonged to an
        # event loop that is gone: a test client may run each request in a loop of its own)
        if drainer is None or drainer.done() or drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
            self._drainer.add_done_callback(_log_crash)
        return await answer

    async def _drain(self) -> None:
        while self._waiting:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
            await self._run(group)

    async def _run(self, group: list[tuple[SendRequest, asyncio.Future[Result]]]) -> None:
        requests = [request for request, _ in group]
        loop = asyncio.get_running_loop()
        published: asyncio.Future[None] = loop.create_future()

        def then() -> None:  # the publisher's thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, published)

        try:
            results = await run_in_threadpool(self._enqueue_many, requests, then)
        except asyncio.CancelledError:  # shutting down: the callers hear it too
            for _, answer in group:
                answer.cancel()
            raise
        except Exception as exc:
            if len(group) == 1 or self._fails_all(exc):
                for _, waiting in group:
                    _settle(waiting, error=exc)
                return
            log.warning(
                "a group of %d enqueues failed (%s); each is tried on its own",
                len(group),
                type(exc).__name__,
            )
            for one in group:
                await self._run([one])
            return

        def answer(_: object = None) -> None:
            for (_request, waiting), result in zip(group, results, strict=True):
                _settle(waiting, result=result)

        # answered once published; the drainer goes on to store the next group meanwhile
        if published.done():
            answer()
        else:
            published.add_done_callback(answer)
            loop.call_later(PUBLISH_WAIT, _resolve, published)


def _resolve(published: asyncio.Future[None]) -> None:
    if not published.done():
        published.set_result(None)


def _settle(
    answer: asyncio.Future[Result],
    *,
    result: Result | None = None,
    error: BaseException | None = None,
) -> None:
    if answer.done() or answer.get_loop().is_closed():  # the caller is gone: nothing to tell
        return
    if error is not None:
        answer.set_exception(error)
    else:
        assert result is not None
        answer.set_result(result)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the enqueue coalescer stopped", exc_info=task.exception())
