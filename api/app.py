"""The HTTP service (``notifyq api``): FastAPI, OpenAPI at ``/docs``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import callbacks, campaigns, notifications, suppressions, ui, verifications, webhooks
from api.auth import ApiKeyGate
from api.coalesce import EnqueueCoalescer
from api.doors import BodyLimit, CampaignRate
from api.expiry import receipt_sweep
from api.journal_replay import journal_replay
from api.key_limits import keys_for
from api.outages import Dependencies, OutageAnswers, readiness
from config.settings import Settings
from providers.base import InvalidRequest
from scheduler.availability import require_writable
from store import Enqueued
from tasks.enqueue import enqueue_many
from tasks.gauges import LedgerCollector, LedgerFollower, RedisStateCollector
from tasks.journal import CallbackJournal
from tasks.publish import Then
from tasks.requests import SendRequest
from tasks.runtime import Runtime
from tasks.webhook_gauges import WebhookBacklogCollector


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def enqueue_once_redis_writes(
    runtime: Runtime, requests: Sequence[SendRequest], then: Then
) -> list[Enqueued | InvalidRequest]:
    """Store and publish, once Redis has taken a write: a Redis that refuses writes
    (read-only after a fail-over, out of memory) is a 503 with nothing stored, where
    storing first would leave rows no worker is told of until the sweeper's turn."""
    require_writable(runtime.redis)
    return enqueue_many(requests, runtime=runtime, then=then)


def settle_heap() -> None:
    """For the serving process, once its app is built: what start-up built (the app, its
    routes and models, the ORM's tables, the libraries) lives as long as the process, so
    it is moved out of the collector's reach (``gc.freeze``). Otherwise every full
    collection — which a request's allocations set off every few hundred requests —
    walks all of it again: a quarter of the API's CPU under load (bench/api.py
    ``--py-spy``). Not for a process that builds many apps (tests): what it froze is
    never collected."""
    gc.collect()
    gc.freeze()


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with app.state.dependencies.quiet_logs():
            async with (
                receipt_sweep(app.state.runtime),
                journal_replay(app.state.runtime, app.state.callback_journal, callbacks.apply),
            ):
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
    app.state.dependencies = Dependencies.of(app.state.runtime)
    app.state.callback_journal = CallbackJournal(app.state.runtime.redis)
    app.state.enqueuer = EnqueueCoalescer(
        lambda requests, then: enqueue_once_redis_writes(app.state.runtime, requests, then),
        fails_all=lambda error: app.state.dependencies.away(error) is not None,
    )
    app.state.receipt_writer = callbacks.receipt_writer(app.state.runtime)

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
        """Liveness: this process answers. The store or Redis being away is readiness."""
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", tags=["operations"])
    def readyz() -> JSONResponse:
        """Readiness: 200 when the store answers and Redis takes writes; else 503 naming
        the dependency that is away (``store``, ``redis``), with ``Retry-After``."""
        return readiness(app.state.runtime, app.state.dependencies)

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
    app.add_middleware(ApiKeyGate, prefix="/v1/")  # outside the body limit: 401 comes first
    # outermost: a dependency away is 503 wherever it is met, the key gate included
    app.add_middleware(OutageAnswers, dependencies=app.state.dependencies)
    # matched in order: the routes taken once per notification first (a post, its receipt)
    app.include_router(notifications.router)
    app.include_router(callbacks.router)
    app.include_router(campaigns.router)
    app.include_router(ui.router)
    app.include_router(verifications.router)
    app.include_router(suppressions.router)
    app.include_router(webhooks.router)
    return app
