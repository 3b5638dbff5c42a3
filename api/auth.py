"""Bearer keys for ``/v1`` and the operator's routes, and the token in callback paths.

A key is recognised by :class:`~api.keyring.KeyRing` (keys made with ``notifyq keys
create``, and ``NOTIFYQ_API_KEYS`` as admin keys) and checked twice over: by
:class:`ApiKeyGate`, an ASGI layer that answers 401 before anything reads the request's
body, and by the routers' :func:`require_api_key` dependency. The gate is what makes
the answer to a caller without a valid key the same whatever it sent: FastAPI parses a
JSON body *before* it runs a route's dependencies, so without it a malformed body
would be told "422" (or "400") instead of "401" — the service telling a stranger about
its input rules, and reading an unauthenticated body of any size first. A revoked, an
unknown and a malformed key get that same 401. The dependency stays so a router
mounted elsewhere is never open.

After the key, in this order: its request rate (429, api/key_limits.py), still before
the body is read; then, per route, its scope (:func:`requires`: 403 for a key that may
not do that at all). What a key may *see* is the stores' business: every read takes the
grant's :attr:`~api.keyring.Grant.owner_filter`, and another key's row answers 404 as
one that does not exist.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.http_middleware import HttpMiddleware
from api.key_limits import KeyLimits
from api.keyring import Grant, KeyRing, bearer
from config.settings import Settings
from store.keys import Scope as KeyScope

UNAUTHORISED = "a valid 'Authorization: Bearer <key>' is required"
CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: where the gate leaves the request's grant for the routes
GRANT = "notifyq.grant"
ADMIN_ONLY = "this route needs an admin key"


def constant_time_in(candidate: str, secrets: list[str]) -> bool:
    found = False
    for secret in secrets:  # no early exit: the time does not tell which key matched
        found |= hmac.compare_digest(candidate.encode(), secret.encode())
    return found


def keyring(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.keyring
    return ring


async def require_api_key(request: Request) -> Grant:
    """The request's grant (401 without a valid key). ``async`` though it waits for
    nothing: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
    hand-off per request for a dict look-up."""
    found: Grant | None = request.scope.get(GRANT)
    if found is None:
        found = keyring(request).grant(request.headers.get("authorization", ""))
        if found is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, UNAUTHORISED, headers=CHALLENGE)
        request.scope[GRANT] = found
    return found


def requires(scope: KeyScope) -> Callable[[Request], Awaitable[Grant]]:
    """A dependency: the grant, if its key may ``scope`` (403 if it may not: a key that
    may not create is told so, whatever it asked to create)."""

    async def allowed(request: Request) -> Grant:
        grant = await require_api_key(request)
        if not grant.may(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this key does not have the {scope} scope"
            )
        return grant

    return allowed


#: a route's grant, by the scope it needs: ``grant: Sender`` in its parameters
Sender = Annotated[Grant, Depends(requires(KeyScope.SEND))]
Reader = Annotated[Grant, Depends(requires(KeyScope.READ))]
Admin = Annotated[Grant, Depends(requires(KeyScope.ADMIN))]


def callback_secrets(settings: Settings, provider: str) -> list[str]:
    """The tokens that open ``provider``'s callback URLs: its own; the shared
    ``NOTIFYQ_CALLBACK_TOKEN`` where it has none, or beside its own while
    ``NOTIFYQ_CALLBACK_SHARED_TOKEN_FALLBACK`` keeps the old URLs working."""
    own = settings.own_callback_token(provider)
    shared = settings.callback_token
    accepted = [own] if own is not None else []
    if shared is not None and (own is None or settings.callback_shared_token_fallback):
        accepted.append(shared)
    return [secret.get_secret_value() for secret in accepted]


async def require_callback_token(request: Request, token: str) -> None:
    """404, as for a path that does not exist, unless ``token`` is the secret of the
    provider the path names (``/callbacks/{token}/{provider}/…``): one provider's
    secret never opens another's door."""
    settings: Settings = request.app.state.settings
    parts = request.scope["path"].split("/")  # not request.url: no URL built per push
    provider = parts[3] if len(parts) > 3 else ""
    if not constant_time_in(token, callback_secrets(settings, provider)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")


#: operator routes behind an admin key when ``NOTIFYQ_OPS_ROUTES_NEED_KEY`` is set
OPS_PATHS = ("/metrics", "/docs", "/redoc", "/openapi.json")


def metrics_token(settings: Settings, header: str) -> bool:
    """The metrics-only token (what Prometheus is given): it opens ``/metrics`` alone."""
    token = settings.metrics_token
    given = bearer(header)
    return (
        token is not None
        and given is not None
        and constant_time_in(given, [token.get_secret_value()])
    )


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")
    return ""


def _refused(code: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, code, headers=CHALLENGE if code == 401 else None)


class ApiKeyGate(HttpMiddleware):
    """Refuses every request under ``prefix`` without a valid key, or over its key's rate,
    before its body is read, and leaves the key's grant in the scope for the routes;
    and, when the settings say so, the operator routes (``/metrics``: an admin key or
    the metrics token; ``/docs`` and the OpenAPI document: an admin key).

    The 401 is byte for byte the one :func:`require_api_key` gives, so a caller cannot
    tell which layer refused it.
    """

    def __init__(self, app: ASGIApp, prefix: str = "/v1/") -> None:
        super().__init__(app)
        self.prefix = prefix

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        state = scope["app"].state
        settings: Settings = state.settings
        refusal: JSONResponse | None = None
        if path.startswith(self.prefix):
            refusal = await self._v1(scope, state.keyring, state.key_limits)
        elif settings.ops_routes_need_key and path.startswith(OPS_PATHS):
            header = _header(scope, b"authorization")
            if not (path == "/metrics" and metrics_token(settings, header)):
                grant = state.keyring.grant(header)
                if grant is None:
                    refusal = _refused(401, UNAUTHORISED)
                elif not grant.may(KeyScope.ADMIN):
                    refusal = _refused(403, ADMIN_ONLY)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _v1(scope: Scope, ring: KeyRing, limits: KeyLimits) -> JSONResponse | None:
        grant = ring.grant(_header(scope, b"authorization"))
        if grant is None:
            return _refused(401, UNAUTHORISED)
        # the rate's Redis call on a thread: a round trip must not hold the event loop
        over = await run_in_threadpool(limits.admit, grant) if grant.rate else None
        if over is not None:
            return over.response()
        scope[GRANT] = grant
        return None
