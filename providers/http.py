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
- past its *deadline* (a call admitted against a number's caps at t must reach the
  provider by t + the cap margin, or two calls could arrive closer together than the
  provider's cap allows): the deadline is checked at the last moment before the
  request's first byte is written — httpcore's ``send_request_headers.started`` trace
  event, once a connection is held and connected — so neither the wait for a slot nor
  a connect counts as leaving, and a connect is never cut short by the deadline (a
  connect cut at the few ms left of a margin failed, and its retry found the call late:
  that was every late call of bench/dispatch.py). A call found past its deadline there
  asks the caller's ``readmit`` to take its cap slots again at that moment and give a
  new deadline — the calls of one :meth:`Transport.perform_all` that ask at the same
  moment share one ``readmit`` (one Redis round trip for all of them, not one each);
  so a busy pool or a slow connect delays calls but does not drop them. If the
  number's room was taken meanwhile, the call is :data:`LATE`, never sent, and the
  caller puts it back to wait.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import ssl
import threading
import time
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


#: the :attr:`Failure.kind` of a call that could not leave before its deadline
LATE = "Late"

#: asked when calls' deadlines have passed before they could leave, given their
#: positions among the calls of one :meth:`Transport.perform_all`: take their cap slots
#: again now and answer, one per position, a new deadline (``time.monotonic()``), or
#: None: that call is not to be sent
Readmit = Callable[[Sequence[int]], Sequence[float | None]]

#: the trace events (httpcore) that come just before a request's first byte is written
_BEFORE_WRITE = frozenset(
    {"http11.send_request_headers.started", "http2.send_request_headers.started"}
)

#: how many times one call may be admitted again before it is given up as LATE (a loop
#: so busy that a fresh margin runs out before the call can be written)
MAX_READMITS = 3

log = logging.getLogger(__name__)


class _Late(Exception):
    """The deadline passed before the request could be written."""


@dataclass(frozen=True)
class Failure:
    """A call that got no reply. ``sent`` says whether it may have reached the provider."""

    sent: bool
    kind: str
    detail: str

    @property
    def code(self) -> str:
        return f"net:{self.kind}"


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


class _Readmits:
    """The late calls of one :meth:`Transport.perform_all` that ask at the same moment
    share one ``readmit``: the first to ask starts a round on the next turn of the loop,
    the ones asking meanwhile join it, and those asking while a round is out form the
    next (no timer: a lone call waits for nothing)."""

    def __init__(self, readmit: Readmit, executor: ThreadPoolExecutor) -> None:
        self._readmit = readmit
        self._executor = executor
        self._pending: list[tuple[int, asyncio.Future[float | None]]] = []
        self._round: asyncio.Task[None] | None = None

    async def ask(self, index: int) -> float | None:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[float | None] = loop.create_future()
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
                    deadlines = await loop.run_in_executor(
                        self._executor, self._readmit, [index for index, _ in batch]
                    )
                except Exception as exc:  # Redis away: not sent, never sent unchecked
                    log.warning(
                        "admitting %d late call(s) again failed (%s): not sent",
                        len(batch),
                        type(exc).__name__,
                    )
                    deadlines = [None] * len(batch)
                for (_, answer), deadline in zip(batch, deadlines, strict=True):
                    if not answer.done():
                        answer.set_result(deadline)
        finally:
            self._round = None


class _Gate:
    """One call's deadline, checked by httpcore's trace hook just before the request is
    written (see the module docstring); raises :class:`_Late` to stop it unwritten."""

    def __init__(self, deadline: float | None, index: int, readmits: _Readmits | None) -> None:
        self.deadline = deadline
        self.index = index
        self.readmits = readmits

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event not in _BEFORE_WRITE:
            return
        for _ in range(MAX_READMITS):
            if self.deadline is None or time.monotonic() < self.deadline:
                return
            if self.readmits is None:
                raise _Late
            self.deadline = await self.readmits.ask(self.index)
            if self.deadline is None:
                raise _Late
        if time.monotonic() >= self.deadline:
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
        #: where readmissions run (Redis round trips): not the loop's default executor,
        #: which also resolves the hosts connects go to
        self._executor: ThreadPoolExecutor | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # started, and not forked since
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="notifyq-http", daemon=True)
                thread.start()
                asyncio.run_coroutine_threadsafe(self._make_pools(), loop).result()
                self._executor = ThreadPoolExecutor(4, thread_name_prefix="notifyq-readmit")
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

    def perform(self, call: Call, *, deadline: float | None = None) -> Reply | Failure:
        return self.perform_all([call], deadline=deadline)[0]

    def perform_all(
        self,
        calls: Sequence[Call],
        *,
        deadline: float | None = None,
        readmit: Readmit | None = None,
        bulk: bool = False,
    ) -> list[Reply | Failure]:
        """Place every call concurrently; one reply or failure per call, in order.

        ``deadline`` (``time.monotonic()`` seconds): a call about to be written after it
        asks ``readmit`` (given the positions of the calls asking at that moment; run on
        a thread of its own, it may block) for a new deadline, and is not sent at all
        (:data:`LATE`) if there is none. ``bulk``: these calls hold connections only
        within bulk's share (see the module docstring)."""
        if not calls:
            return []
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(
            self._gather(calls, deadline, readmit, bulk), loop
        )
        return future.result()

    async def _gather(
        self,
        calls: Sequence[Call],
        deadline: float | None,
        readmit: Readmit | None,
        bulk: bool,
    ) -> list[Reply | Failure]:
        assert self._executor is not None
        readmits = _Readmits(readmit, self._executor) if readmit is not None else None
        return list(
            await asyncio.gather(
                *(self._one(c, _Gate(deadline, i, readmits), bulk) for i, c in enumerate(calls))
            )
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
        wait = self.settings.pool_timeout
        if gate.deadline is not None and gate.readmits is None:
            wait = min(wait, gate.deadline - time.monotonic())
        try:
            if wait <= 0:
                raise TimeoutError
            slot = await asyncio.wait_for(self._take_slot(bulk), wait)
        except TimeoutError:
            if gate.deadline is not None and time.monotonic() >= gate.deadline:
                return _late()
            return Failure(sent=False, kind="PoolTimeout", detail="no free connection in time")
        try:
            late = gate.deadline is not None and time.monotonic() >= gate.deadline
            if late and gate.readmits is None:  # nothing to ask: not worth a connect
                return _late()
            return await self._request(self._clients[slot], call, gate)
        finally:
            self._give_slot(slot, bulk)

    def _timeout(self) -> httpx.Timeout:
        """The call's timeouts. Connecting is not leaving: the deadline is checked once a
        connection is ready, just before the request is written (:class:`_Gate`)."""
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
    return Failure(sent=False, kind=LATE, detail="could not leave before its deadline")


def _safe(exc: Exception) -> str:
    """An error's text without the URL's query (which may carry a number)."""
    return type(exc).__name__ if not str(exc) else str(exc).split("?")[0][:200]
