"""The one HTTP transport every provider call goes through.

``httpx.AsyncClient`` connection pools per process, on an event loop of its own thread:
worker threads hand it whole batches of calls and wait, so a dispatch task can place
dozens of calls at once without a thread per call, and every call goes through pools
with explicit limits and connect/read/write/pool timeouts.

Several small pools rather than one large one: httpcore scans every connection of a
pool on each request event, so one pool of 400 connections spends its CPU on the scan
(measured: a worker at 100% CPU placing under 100 calls a second). A call takes a
*slot* from a FIFO queue — a slot names a pool with a free connection — so no pool ever
queues requests internally and the scan stays short.

Bulk calls (a campaign's rows: the caller says so) hold at most ``bulk_share`` of the
slots at once; the rest are always there for urgent and normal calls, so a code never
waits for a connection behind a campaign's calls.

Failures become outcomes here, once, for every provider:

- connect error, connect timeout, pool timeout: the request never left, so it is
  retried at once (tenacity, a few short tries), then TRANSIENT;
- read timeout, a dropped connection after the request was written: AMBIGUOUS — the
  provider may have placed the call; only an :attr:`~providers.base.Call.idempotent`
  call (a balance query) is retried on these;
- not allowed to leave: just before a request's first byte is written — httpcore's
  ``send_request_headers.started`` trace event, once a connection is held and connected —
  the transport asks the caller's :data:`MayWrite` whether it may be written now; if
  not, the request is :data:`LATE`, never sent, and the caller puts it back to wait.
  Neither the wait for a slot nor a connect counts as leaving, so neither is cut short
  by that question (a connect cut at the few ms left of a margin failed, and its retry
  found the call late). The requests of one :meth:`Transport.perform_all` that ask at
  the same moment ask in one call (one answer for all of them, not one each). What the
  answer rests on is the caller's business (tasks/attempts.py: a number's cap margin).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from providers.base import Call, Reply

NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


#: the :attr:`Failure.kind` of a call its caller's :data:`MayWrite` did not let leave
LATE = "Late"

#: asked just before requests are written, given their positions among the calls of
#: one :meth:`Transport.perform_all` (those asking at the same moment together): may
#: each be written now? One answer a position; False: that request is not sent
#: (:data:`LATE`). It runs on a thread of the transport's own, so it may block.
MayWrite = Callable[[Sequence[int]], Sequence[bool]]

#: the trace events (httpcore) that come just before a request's first byte is written
_BEFORE_WRITE = frozenset(
    {"http11.send_request_headers.started", "http2.send_request_headers.started"}
)

log = logging.getLogger(__name__)


class _Late(Exception):
    """The caller said no when the request was about to be written."""


@dataclass(frozen=True)
class Failure:
    """A call that got no reply. ``sent`` says whether it may have reached the provider."""

    sent: bool
    kind: str
    detail: str

    @property
    def code(self) -> str:
        return f"net:{self.kind}"

    @property
    def late(self) -> bool:
        """Not let leave by the caller (:data:`MayWrite`): never written."""
        return self.kind == LATE


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    write_timeout: float = 10.0
    pool_timeout: float = 10.0
    max_connections: int = 400
    #: connections per pool (see the module docstring)
    pool_size: int = 4
    #: the most of the connections bulk calls may hold at once (see the module docstring)
    bulk_share: float = 1.0
    #: below the usual server keep-alive (5 s on many), so we never reuse a dying socket
    keepalive_expiry: float = 4.0
    connect_retries: int = 3


class _Asks:
    """The requests of one :meth:`Transport.perform_all` that ask at the same moment share
    one :data:`MayWrite` call: the first to ask starts a round on the next turn of the
    loop, the ones asking meanwhile join it, and those asking while a round is out form
    the next (no timer: a lone request waits for nothing)."""

    def __init__(self, may_write: MayWrite, executor: ThreadPoolExecutor) -> None:
        self._may_write = may_write
        self._executor = executor
        self._pending: list[tuple[int, asyncio.Future[bool]]] = []
        self._round: asyncio.Task[None] | None = None

    async def ask(self, index: int) -> bool:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        self._pending.append((index, answer))
        if self._round is None:
            self._round = loop.create_task(self._rounds())
        return await answer

    async def _rounds(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    answers: Sequence[bool] = await loop.run_in_executor(
                        self._executor, self._may_write, [index for index, _ in batch]
                    )
                except Exception as exc:  # the caller could not tell: not sent, never unchecked
                    log.warning(
                        "asking whether %d request(s) may leave failed (%s): not sent",
                        len(batch),
                        type(exc).__name__,
                    )
                    answers = [False] * len(batch)
                for (_, future), allowed in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(allowed)
        finally:
            self._round = None


class _Gate:
    """One request's question, asked by httpcore's trace hook just before the request is
    written (see the module docstring); raises :class:`_Late` to stop it unwritten."""

    def __init__(self, index: int, asks: _Asks | None) -> None:
        self.index = index
        self.asks = asks

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event in _BEFORE_WRITE and self.asks and not await self.asks.ask(self.index):
            raise _Late


class Transport:
    """Thread-safe: any thread may call :meth:`perform`; the loop thread does the I/O."""

    def __init__(self, settings: HttpSettings | None = None) -> None:
        self.settings = settings or HttpSettings()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list[httpx.AsyncClient] = []
        self._slots: asyncio.Queue[int] | None = None
        #: slots bulk calls may still take (at most ``bulk_share`` of them)
        self._bulk_room: asyncio.Semaphore | None = None
        self._pid = 0
        #: where :data:`MayWrite` questions run (they may block): not the loop's default
        #: executor, which also resolves the hosts connects go to
        self._executor: ThreadPoolExecutor | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # started, and not forked since
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="notifyq-http", daemon=True)
                thread.start()
                asyncio.run_coroutine_threadsafe(self._make_pools(), loop).result()
                self._executor = ThreadPoolExecutor(4, thread_name_prefix="notifyq-may-write")
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    async def _make_pools(self) -> None:
        s = self.settings
        pools = max(1, -(-s.max_connections // s.pool_size))
        per_pool = -(-s.max_connections // pools)
        # one TLS context for every pool: each costs ~20 ms to build, and a hundred of them
        # on a worker's first call held that call back for seconds (after its caps admitted it)
        context = httpx.create_ssl_context()
        self._clients = [self._client(per_pool, context) for _ in range(pools)]
        self._slots = asyncio.Queue()
        for _ in range(per_pool):
            for index in range(pools):
                self._slots.put_nowait(index)
        self._bulk_room = asyncio.Semaphore(max(1, math.floor(pools * per_pool * s.bulk_share)))

    def _client(self, connections: int, context: ssl.SSLContext) -> httpx.AsyncClient:
        s = self.settings
        return httpx.AsyncClient(
            verify=context,
            timeout=httpx.Timeout(
                connect=s.connect_timeout,
                read=s.read_timeout,
                write=s.write_timeout,
                pool=s.pool_timeout,
            ),
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=s.keepalive_expiry,
            ),
            follow_redirects=False,
            headers={"User-Agent": "notifyq"},
        )

    def warm(self) -> None:
        """Start the loop and build the pools now (a worker does this when it starts), so
        no admitted call waits for them."""
        self._ensure_loop()

    def perform(self, call: Call) -> Reply | Failure:
        return self.perform_all([call])[0]

    def perform_all(
        self,
        calls: Sequence[Call],
        *,
        may_write: MayWrite | None = None,
        bulk: bool = False,
    ) -> list[Reply | Failure]:
        """Place every call concurrently; one reply or failure per call, in order.

        ``may_write``: asked just before each request is written (see :data:`MayWrite`);
        a request it refuses is not sent at all (:data:`LATE`). ``bulk``: these calls
        hold connections only within bulk's share (see the module docstring)."""
        if not calls:
            return []
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._gather(calls, may_write, bulk), loop)
        return future.result()

    async def _gather(
        self,
        calls: Sequence[Call],
        may_write: MayWrite | None,
        bulk: bool,
    ) -> list[Reply | Failure]:
        assert self._executor is not None
        asks = _Asks(may_write, self._executor) if may_write is not None else None
        return list(
            await asyncio.gather(*(self._one(c, _Gate(i, asks), bulk) for i, c in enumerate(calls)))
        )

    async def _take_slot(self, bulk: bool) -> int:
        """A free slot; for a bulk call, only while bulk holds less than its share."""
        assert self._slots is not None and self._bulk_room is not None
        if not bulk:
            return await self._slots.get()
        await self._bulk_room.acquire()
        try:
            return await self._slots.get()
        except BaseException:  # cancelled by the pool timeout: the room is not held
            self._bulk_room.release()
            raise

    def _give_slot(self, slot: int, bulk: bool) -> None:
        assert self._slots is not None and self._bulk_room is not None
        self._slots.put_nowait(slot)
        if bulk:
            self._bulk_room.release()

    async def _one(self, call: Call, gate: _Gate, bulk: bool = False) -> Reply | Failure:
        try:
            slot = await asyncio.wait_for(self._take_slot(bulk), self.settings.pool_timeout)
        except TimeoutError:
            return Failure(sent=False, kind="PoolTimeout", detail="no free connection in time")
        try:
            return await self._request(self._clients[slot], call, gate)
        finally:
            self._give_slot(slot, bulk)

    def _timeout(self) -> httpx.Timeout:
        """The call's timeouts. Connecting is not leaving: whether the request may leave is
        asked once a connection is ready, just before it is written (:class:`_Gate`)."""
        s = self.settings
        return httpx.Timeout(
            connect=s.connect_timeout,
            read=s.read_timeout,
            write=s.write_timeout,
            pool=s.pool_timeout,
        )

    async def _request(self, client: httpx.AsyncClient, call: Call, gate: _Gate) -> Reply | Failure:
        retry_on = NOT_SENT + MAYBE_SENT if call.idempotent else NOT_SENT
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(retry_on),
                stop=stop_after_attempt(self.settings.connect_retries),
                wait=wait_exponential_jitter(multiplier=0.05, max=1.0),
                reraise=True,
            ):
                with attempt:
                    response = await client.request(
                        call.method,
                        call.url,
                        headers=dict(call.headers),
                        params=call.params,
                        data=call.form,
                        json=call.json,
                        timeout=self._timeout(),
                        extensions={"trace": gate},
                    )
                    body = await response.aread()
                    return Reply(
                        response.status_code, body, response.headers.get("content-type", "")
                    )
        except _Late:
            return _late()
        except NOT_SENT as exc:
            return Failure(sent=False, kind=type(exc).__name__, detail=_safe(exc))
        except MAYBE_SENT as exc:
            return Failure(sent=True, kind=type(exc).__name__, detail=_safe(exc))
        except httpx.HTTPError as exc:
            return Failure(sent=True, kind=type(exc).__name__, detail=_safe(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            if self._loop is not None and self._pid == os.getpid():
                for client in self._clients:
                    asyncio.run_coroutine_threadsafe(client.aclose(), self._loop).result(timeout=5)
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._executor is not None:
                    self._executor.shutdown(wait=False)
            self._loop, self._clients, self._executor = None, [], None


def _late() -> Failure:
    return Failure(sent=False, kind=LATE, detail="not let leave when it could be written")


def _safe(exc: Exception) -> str:
    """An error's text without the URL's query (which may carry a number)."""
    return type(exc).__name__ if not str(exc) else str(exc).split("?")[0][:200]
