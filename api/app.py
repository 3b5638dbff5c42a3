"""The HTTP service (``notifyq api``): FastAPI, OpenAPI at ``/docs``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import callbacks, campaigns, notifications, suppressions, ui, verifications, webhooks
from api.auth import ApiKeyGate
from api.coalesce import EnqueueCoalescer
from api.doors import BodyLimit, CampaignRate
from api.expiry import receipt_sweep
from api.key_limits import keys_for
from config.settings import Settings
from tasks.enqueue import enqueue_many
from tasks.gauges import LedgerCollector, LedgerFollower, RedisStateCollector
from tasks.runtime import Runtime
from tasks.webhook_gauges import WebhookBacklogCollector


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with receipt_sweep(app.state.runtime):
            yield
        app.state.keyring.close()

    app = FastAPI(
        title="notifyq",
        version="0.1.0",
        description="Voice notifications and SMS codes, inside every cap and window.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.runtime = runtime or Runtime.build(settings)
    app.state.campaign_rate = CampaignRate(app.state.runtime.redis, settings.campaigns_per_minute)
    app.state.keyring, app.state.key_limits = keys_for(app.state.runtime)
    app.state.enqueuer = EnqueueCoalescer(
        lambda requests, then: enqueue_many(requests, runtime=app.state.runtime, then=then)
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        return JSONResponse({"errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        """FastAPI answers 400 when it cannot decode a body at all (nested too deep for
        the JSON parser, or not in its declared charset); no ``/v1`` route raises 400 of
        its own, so there it is bad input like any other: 422 naming the body."""
        if exc.status_code == 400 and request.url.path.startswith("/v1/"):
            unreadable = {"field": "body", "message": "not a JSON document we can read"}
            return JSONResponse({"errors": [unreadable]}, status_code=422)
        if exc.status_code == 413 and request.url.path.startswith("/v1/"):
            too_large = {"field": "body", "message": str(exc.detail)}
            return JSONResponse({"errors": [too_large]}, status_code=413)
        return await http_exception_handler(request, exc)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> JSONResponse:
        rt: Runtime = app.state.runtime
        checks: dict[str, str] = {}
        try:
            rt.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # health reports every failure as data
            checks["redis"] = f"error: {type(exc).__name__}"
        try:
            with rt.db.read() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", **checks},
            status_code=200 if healthy else 503,
        )

    registry = CollectorRegistry()
    registry.register(LedgerCollector(app.state.runtime))
    registry.register(RedisStateCollector(app.state.runtime))
    registry.register(LedgerFollower(app.state.runtime))
    registry.register(WebhookBacklogCollector(app.state.runtime))

    @app.get("/metrics", tags=["operations"])
    def metrics() -> PlainTextResponse:
        """This process's counters, and gauges read from the ledger and Redis."""
        body = generate_latest(REGISTRY) + generate_latest(registry)
        return PlainTextResponse(body.decode(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, prefix="/v1/")
    app.add_middleware(ApiKeyGate, prefix="/v1/")  # added last: outermost, so 401 comes first
    app.include_router(notifications.router)
    app.include_router(campaigns.router)
    app.include_router(callbacks.router)
    app.include_router(ui.router)
    app.include_router(verifications.router)
    app.include_router(suppressions.router)
    app.include_router(webhooks.router)
    return app
