"""What every emulator shares: configuration, the clock, the ledger, outcomes, faults,
and the pusher that delivers receipts with a provider's retry rule."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from json import dumps
from typing import Any
from urllib.parse import urlencode

from sandbox.push_client import PushClient, PushError

log = logging.getLogger("notifyq.sandbox")

#: receipts pushed at once (the receivers are our API; more only queues)
PUSH_CONCURRENCY = 32
FORM = "application/x-www-form-urlencoded"
#: receipt outcome kinds a test can seed for a number (by its last digits)
KINDS = ("answered", "no-answer", "busy", "vacant", "off", "rejected")


@dataclass
class SandboxConfig:
    ihuyi_account: str = "sandbox"
    ihuyi_apikey: str = "sandbox-apikey"
    ihuyi_receipt_url: str | None = None
    ihuyi_template_url: str | None = None
    jumdata_app_id: str = "sandbox"
    jumdata_app_secret: str = "sandbox-secret"
    #: jumdata's calling window, Beijing time; "" = always (tests whose clock is not Beijing's day)
    jumdata_window: str = "09:00-21:00"
    apispace_token: str = "sandbox-token"
    #: where SMS delivery reports are pushed (APISpace's console binding; None: no push)
    apispace_sms_receipt_url: str | None = None
    itniotech_api_key: str = "sandbox"
    itniotech_api_secret: str = "sandbox-secret"
    #: where call results are pushed (itniotech's console binding; None: no push)
    itniotech_receipt_url: str | None = None
    #: how far a signed time stamp may be from ours, seconds
    stamp_tolerance: float = 300.0
    #: receipts arrive this long after the call (seconds, before time_scale)
    receipt_delay: float = 2.0
    #: multiplies every sandbox delay: receipt delays and the 60 s push retry steps
    time_scale: float = 1.0
    latency_ms: float = 0.0
    #: share of requests refused with HTTP 503 before anything is placed
    fail_rate: float = 0.0
    #: provider name → its own share of HTTP 503s (one provider faulting, the rest fine)
    fail_rates: dict[str, float] = field(default_factory=dict)
    #: provider name → how many of its first requests are refused with HTTP 503 before
    #: anything is placed (a fault for sure; the client may safely try again)
    fail_first: dict[str, int] = field(default_factory=dict)
    #: provider name → how many of its first requests are *placed*, then answered HTTP
    #: 500 (an internal error after the call went out: the client cannot know)
    error_first: dict[str, int] = field(default_factory=dict)
    #: the code an APISpace report pull answers with: the seed's example says "0", its
    #: code table "000"
    apispace_report_code: str = "0"
    #: the most reports one APISpace pull hands back whatever ``count`` asks (0: as many
    #: as asked); the seed promises no page size
    apispace_report_max: int = 0
    timeout_rate: float = 0.0
    #: how long a "timeout" fault holds the request (longer than the client waits)
    timeout_hold: float = 60.0
    #: last digits → outcome kind, e.g. {"0000": "no-answer"}
    outcomes: dict[str, str] = field(default_factory=dict)
    #: last digits → the provider's refusal code at send time, e.g. {"9999": "4030"};
    #: "*" refuses every number (an account-wide fault such as a spent balance)
    refusals: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    #: seconds added to the sandbox's clock (:meth:`Sandbox.now`), as
    #: ``NOTIFYQ_CLOCK_CONTROL`` adds an offset to the workers': a test that moves the
    #: workers' clock past a cap window moves this one with it, instead of sleeping
    clock_offset: float = 0.0

    def public(self) -> dict[str, Any]:
        """The config without credentials (for GET /_sandbox/config); receipt URLs carry
        the callback token in their path, so they are left out too."""
        return {
            k: v
            for k, v in asdict(self).items()
            if not any(s in k for s in ("apikey", "secret", "token", "api_key", "_url"))
        }


@dataclass
class Call:
    seq: int
    provider: str
    api: str
    at: float
    number: str | None
    code: str
    placed: bool
    ref: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


class Ledger:
    """Every request the sandbox answered, in order; ``placed`` marks real phone calls,
    ``at`` is the sandbox's clock (offset included)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.calls: list[Call] = []
        self.clock = clock
        self._seq = itertools.count(1)

    def add(
        self,
        provider: str,
        api: str,
        number: str | None,
        code: str,
        placed: bool,
        ref: str | None = None,
        **fields: Any,
    ) -> Call:
        call = Call(
            next(self._seq), provider, api, self.clock(), number, str(code), placed, ref, fields
        )
        self.calls.append(call)
        return call

    def query(self, provider: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return [
            asdict(c)
            for c in self.calls
            if c.seq > since and (provider is None or c.provider == provider)
        ]

    def count(self, provider: str | None = None) -> dict[str, int]:
        """How many calls, and how many placed (for pollers: no list to serialise)."""
        mine = [c for c in self.calls if provider is None or c.provider == provider]
        return {"calls": len(mine), "placed": sum(1 for c in mine if c.placed)}

    def clear(self) -> None:
        self.calls.clear()


class SlidingCounter:
    """Arrival times of placed calls per key, for the providers' own per-number caps."""

    def __init__(self, keep: float = 86400.0) -> None:
        self.keep = keep
        self.times: dict[str, deque[float]] = defaultdict(deque)

    def count(self, key: str, window: float, now: float) -> int:
        times = self.times[key]
        while times and times[0] <= now - self.keep:
            times.popleft()
        return sum(1 for t in times if t > now - window)

    def add(self, key: str, now: float) -> None:
        self.times[key].append(now)


class Sandbox:
    """The shared state of one sandbox server."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.ledger = Ledger(self.now)
        self.random = random.Random(config.seed)
        self._refs = itertools.count(int(time.time()) % 100000 * 100000)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.client: PushClient | None = None
        self.pushes: list[dict[str, Any]] = []
        self._failed: dict[str, int] = {}
        self._errored: dict[str, int] = {}

    def now(self) -> float:
        """The provider's clock: this host's, plus ``clock_offset``. It decides what a
        provider decides by time (its per-number caps, jumdata's calling window, report
        retention) and stamps the ledger. Signed time stamps are checked against the host's
        own clock (:meth:`stamp_fresh`): the clients sign with theirs, which no offset moves."""
        return time.time() + self.config.clock_offset

    def new_ref(self, prefix: str = "") -> str:
        return f"{prefix}{next(self._refs)}"

    def outcome_for(self, number: str) -> str:
        for suffix, kind in sorted(self.config.outcomes.items(), key=lambda kv: -len(kv[0])):
            if number.endswith(suffix):
                return kind
        return "answered"

    def refusal_for(self, number: str) -> str | None:
        """The code a test seeded for this number's send, if any (longest suffix wins)."""
        for suffix, code in sorted(self.config.refusals.items(), key=lambda kv: -len(kv[0])):
            if suffix == "*" or number.endswith(suffix):
                return code
        return None

    def stamp_fresh(self, stamp: float) -> bool:
        return abs(time.time() - stamp) <= self.config.stamp_tolerance

    async def fault(self, provider: str | None = None) -> str | None:
        """Latency first, then maybe a fault: "fail" (HTTP 503, nothing placed),
        "error" (placed, then HTTP 500) or "timeout" (placed, then held). A provider's
        own rate (``fail_rates``) replaces the global ``fail_rate``."""
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)
        name = provider or ""
        if self._errored.get(name, 0) < self.config.error_first.get(name, 0):
            self._errored[name] = self._errored.get(name, 0) + 1
            return "error"
        if self._failed.get(name, 0) < self.config.fail_first.get(name, 0):
            self._failed[name] = self._failed.get(name, 0) + 1
            return "fail"
        fail_rate = self.config.fail_rates.get(name, self.config.fail_rate)
        roll = self.random.random()
        if roll < fail_rate:
            return "fail"
        if roll < fail_rate + self.config.timeout_rate:
            return "timeout"
        return None

    async def hold(self) -> None:
        await asyncio.sleep(self.config.timeout_hold)

    def later(self, delay: float, job: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay * self.config.time_scale)
            await job()

        task = asyncio.get_running_loop().create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def push(
        self,
        url: str,
        form: Mapping[str, str] | None = None,
        *,
        json: Any = None,
        tries: int = 3,
        step: float = 60.0,
        expect: str = "success",
    ) -> None:
        """POST a form — or, given ``json``, a JSON body (APISpace SMS, itniotech) —
        until the receiver answers ``expect``; after each failure wait ``step`` more
        than the time before (60 s, then 120 s), at most ``tries`` tries."""
        assert self.client is not None
        if (form is None) == (json is None):
            raise TypeError("push takes a form or json, not both or neither")
        if json is not None:
            body, kind = dumps(json, ensure_ascii=False).encode(), "application/json"
        else:
            body, kind = urlencode(dict(form or {})).encode(), FORM
        wait = 0.0
        for attempt in range(1, tries + 1):
            try:
                answer = await self.client.post(url, body, kind)
                ok = answer.status == 200 and answer.text.strip() == expect
            except PushError:
                ok = False
            self.pushes.append(
                {
                    "url": url.rsplit("/callbacks/", maxsplit=1)[-1].split("/", 1)[-1],
                    "attempt": attempt,
                    "ok": ok,
                    "at": self.now(),
                }
            )
            if ok:
                return
            wait += step
            if attempt < tries:
                await asyncio.sleep(wait * self.config.time_scale)
        log.warning("push to a receiver failed %d times; giving up as the provider does", tries)
