"""The sandbox server: every emulator's routes on one Starlette app, plus its controls.

``GET /_sandbox/calls[?provider=&since=]`` the ledger; ``DELETE`` clears it.
``GET /_sandbox/calls/count[?provider=]`` how many calls it holds, and how many placed.
``GET|POST /_sandbox/config`` reads or changes latency, fault rates and outcomes live,
and moves the sandbox's clock (``clock_offset``, seconds: forward only, as the workers').
``GET /_sandbox/pushes`` what was pushed to receivers, and whether they said success.
``GET /_sandbox/reports`` how many APISpace voice reports wait to be pulled.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import fields as dataclass_fields

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.apispace import ApispaceEmulator
from sandbox.ihuyi import IhuyiEmulator
from sandbox.itniotech import ItniotechEmulator
from sandbox.jumdata import JumdataEmulator
from sandbox.push_client import PushClient
from sandbox.state import PUSH_CONCURRENCY, Sandbox, SandboxConfig

LIVE = {
    "latency_ms",
    "fail_rate",
    "fail_rates",
    "fail_first",
    "error_first",
    "apispace_report_code",
    "apispace_report_max",
    "timeout_rate",
    "timeout_hold",
    "outcomes",
    "refusals",
    "receipt_delay",
    "time_scale",
    "jumdata_window",
    "stamp_tolerance",
    "clock_offset",
}


def create_app(config: SandboxConfig | None = None) -> Starlette:
    sandbox = Sandbox(config or SandboxConfig())
    apispace = ApispaceEmulator(sandbox)
    emulators = [
        IhuyiEmulator(sandbox),
        apispace,
        JumdataEmulator(sandbox),
        ItniotechEmulator(sandbox),
    ]

    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            sandbox.ledger.clear()
            return JSONResponse({"cleared": True})
        provider = request.query_params.get("provider")
        since = int(request.query_params.get("since", "0"))
        return JSONResponse({"calls": sandbox.ledger.query(provider, since)})

    async def count(request: Request) -> Response:
        return JSONResponse(sandbox.ledger.count(request.query_params.get("provider")))

    async def config_route(request: Request) -> Response:
        if request.method == "POST":
            changes = await request.json()
            known = {f.name for f in dataclass_fields(SandboxConfig)}
            for name, value in changes.items():
                if name not in LIVE or name not in known:
                    return JSONResponse(
                        {"error": f"{name} cannot be changed live"}, status_code=400
                    )
                if name == "clock_offset" and not _moves_forward(
                    value, sandbox.config.clock_offset
                ):
                    return JSONResponse(
                        {"error": "clock_offset is a number of seconds, never less than now"},
                        status_code=400,
                    )
            for name, value in changes.items():
                setattr(sandbox.config, name, value)
        return JSONResponse(sandbox.config.public())

    async def pushes(_: Request) -> Response:
        return JSONResponse({"pushes": sandbox.pushes})

    async def reports(_: Request) -> Response:
        return JSONResponse({"waiting": len(apispace.reports)})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        sandbox.client = PushClient(timeout=10, concurrency=PUSH_CONCURRENCY)
        try:
            yield
        finally:
            for task in list(sandbox.tasks):
                task.cancel()
            await sandbox.client.aclose()

    routes = [
        Route("/_sandbox/calls", calls, methods=["GET", "DELETE"]),
        Route("/_sandbox/calls/count", count, methods=["GET"]),
        Route("/_sandbox/config", config_route, methods=["GET", "POST"]),
        Route("/_sandbox/pushes", pushes, methods=["GET"]),
        Route("/_sandbox/reports", reports, methods=["GET"]),
    ]
    for emulator in emulators:
        routes += emulator.routes()
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    return app


def _moves_forward(value: object, current: float) -> bool:
    """A clock that went back would re-open windows the provider already closed."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= current
