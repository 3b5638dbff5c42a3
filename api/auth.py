"""Bearer keys for ``/v1`` and the token in callback paths, both compared in constant time.

The key is checked twice over: by :class:`ApiKeyGate`, an ASGI layer that answers 401
before anything reads the request's body, and by the routers' :func:`require_api_key`
dependency. The gate is what makes the answer to a caller without a key the same
whatever it sent: FastAPI parses a JSON body *before* it runs a route's dependencies,
so without it a malformed body would be told "422" (or "400") instead of "401" — the
service telling a stranger about its input rules, and reading an unauthenticated body
of any size first. The dependency stays so a router mounted elsewhere is never open.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from config.settings import Settings

UNAUTHORISED = "a valid 'Authorization: Bearer <key>' is required"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def constant_time_in(candidate: str, secrets: list[str]) -> bool:
    found = False
    for secret in secrets:  # no early exit: the time does not tell which key matched
        found |= hmac.compare_digest(candidate.encode(), secret.encode())
    return found


def authorised(settings: Settings, header: str) -> bool:
    """Whether an ``Authorization`` header carries one of the configured keys."""
    keys = [k.get_secret_value() for k in settings.api_keys]
    scheme, _, key = header.partition(" ")
    return (
        bool(keys)
        and scheme.lower() == "bearer"
        and bool(key)
        and constant_time_in(key.strip(), keys)
    )


async def require_api_key(request: Request) -> None:
    """``async`` though it waits for nothing: FastAPI runs a plain ``def`` dependency in
    its thread pool, a thread hand-off per request for a string comparison."""
    settings: Settings = request.app.state.settings
    if not authorised(settings, request.headers.get("authorization", "")):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, UNAUTHORISED, headers=CHALLENGE)


def callback_secrets(settings: Settings, provider: str) -> list[str]:
    """The tokens that open ``provider``'s callback URLs: its own; the shared
    ``NOTIFYQ_CALLBACK_TOKEN`` where it has none, or beside its own while
    ``NOTIFYQ_CALLBACK_SHARED_TOKEN_FALLBACK`` keeps the old URLs working."""
    own = getattr(settings, f"{provider.replace('-', '_')}_callback_token", None)
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
    parts = request.url.path.split("/")
    provider = parts[3] if len(parts) > 3 else ""
    if not constant_time_in(token, callback_secrets(settings, provider)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")


#: operator routes behind the key when ``NOTIFYQ_OPS_ROUTES_NEED_KEY`` is set
OPS_PATHS = ("/metrics", "/docs", "/redoc", "/openapi.json")


def metrics_authorised(settings: Settings, header: str) -> bool:
    """An API key, or the metrics-only token (what Prometheus is given)."""
    if authorised(settings, header):
        return True
    token = settings.metrics_token
    scheme, _, given = header.partition(" ")
    return (
        token is not None
        and scheme.lower() == "bearer"
        and constant_time_in(given.strip(), [token.get_secret_value()])
    )


def _header(scope: Scope, wanted: bytes) -> str:
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")
    return ""


class ApiKeyGate:
    """Refuses every request under ``prefix`` without a valid key, before its body is read;
    and, when the settings say so, the operator routes (``/metrics``: a key or the
    metrics token; ``/docs`` and the OpenAPI document: a key).

    The answer is byte for byte the one :func:`require_api_key` gives, so a caller
    cannot tell which layer refused it.
    """

    def __init__(self, app: ASGIApp, prefix: str = "/v1/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        settings: Settings = scope["app"].state.settings
        header = _header(scope, b"authorization")
        if path.startswith(self.prefix):
            allowed = authorised(settings, header)
        elif settings.ops_routes_need_key and path.startswith(OPS_PATHS):
            allowed = (
                metrics_authorised(settings, header)
                if path == "/metrics"
                else authorised(settings, header)
            )
        else:
            allowed = True
        if allowed:
            await self.app(scope, receive, send)
            return
        refusal = JSONResponse({"detail": UNAUTHORISED}, 401, headers=CHALLENGE)
        await refusal(scope, receive, send)
