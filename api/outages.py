"""What the API answers while the store or Redis is away: ``503`` with ``Retry-After``
and a one-line reason naming the dependency, never a 500 with a traceback — a client
can tell "try again shortly" from a bug. The process logs one WARNING when a
dependency goes and one INFO when it is back (observe/outage.py), not a line a request.

``/healthz`` is liveness (the process answers; nothing else is asked), ``/readyz`` is
readiness: the store answers a query and Redis takes a write, or ``503`` naming each
that does not. A load balancer or compose's healthcheck asks ``/readyz``; a supervisor
that restarts dead processes asks ``/healthz`` (restarting an API because its store
is away would not bring the store back).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http_middleware import HttpMiddleware
from observe.outage import Outage, first_line, quiet_on_root
from scheduler.availability import RedisRefusesWrites, redis_away, require_writable
from store.availability import probe_store, store_away
from tasks.runtime import Runtime

#: seconds a client is asked to wait before trying again
RETRY_AFTER = 5


@dataclass
class Dependencies:
    """The store and Redis as this API process sees them."""

    store: Outage
    redis: Outage

    @classmethod
    def of(cls, runtime: Runtime) -> Dependencies:
        return cls(
            store=Outage("the store", lambda: probe_store(runtime.db)),
            redis=Outage("Redis", lambda: require_writable(runtime.redis)),
        )

    def away(self, error: BaseException) -> tuple[str, Outage] | None:
        """Which dependency ``error`` says is away (its field name and watch), if any."""
        if store_away(error):
            return "store", self.store
        if redis_away(error):
            return "redis", self.redis
        return None

    @contextlib.contextmanager
    def quiet_logs(self) -> Iterator[None]:
        """While the app runs: a log record carrying an error that says the store or
        Redis is away (a background thread's, a library's) is told to its watch, which
        logs it once, instead of printing its traceback (observe/outage.py)."""
        quiet = quiet_on_root([(self.store, store_away), (self.redis, redis_away)])
        try:
            yield
        finally:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(quiet)
            self.store.close()
            self.redis.close()


def unavailable(field: str, reason: str) -> JSONResponse:
    """503 naming the dependency (``field``) and why, in one line, with ``Retry-After``."""
    message = f"{reason}; try again in {RETRY_AFTER} s"
    return JSONResponse(
        {"errors": [{"field": field, "message": message}]},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER)},
    )


class OutageAnswers(HttpMiddleware):
    """The outermost middleware: an error that means the store or Redis is away becomes
    ``503`` (if nothing of the answer was sent yet) and one log line per outage."""

    def __init__(self, app: ASGIApp, dependencies: Dependencies) -> None:
        super().__init__(app)
        self.dependencies = dependencies

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            away = self.dependencies.away(error)
            if away is None or started:
                raise
            field, outage = away
            outage.failed(error)
            reason = str(error) if isinstance(error, RedisRefusesWrites) else None
            await unavailable(field, reason or f"{outage.name} is unavailable")(
                scope, receive, send
            )


def readiness(runtime: Runtime, dependencies: Dependencies) -> JSONResponse:
    """``/readyz``: each dependency ``ok`` or why not; 200 only when both are ok."""
    checks = {
        "store": _check(lambda: probe_store(runtime.db), dependencies.store),
        "redis": _check(lambda: require_writable(runtime.redis), dependencies.redis),
    }
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", **checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": str(RETRY_AFTER)},
    )


def _check(probe: Callable[[], object], outage: Outage) -> str:
    try:
        probe()
    except Exception as error:  # readiness reports every failure as data
        outage.failed(error)
        return f"unavailable: {first_line(error)}"
    outage.recovered()
    return "ok"
