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

from worker.settings import Settings

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


async def require_callback_token(request: Request, token: str) -> None:
    settings: Settings = request.app.state.settings
    expected = settings.callback_token
    if expected is None or not constant_time_in(token, [expected.get_secret_value()]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")


class ApiKeyGate:
    """Refuses every request under ``prefix`` without a valid key, before its body is read.

    The answer is byte for byte the one :func:`require_api_key` gives, so a caller
    cannot tell which layer refused it.
    """

    def __init__(self, app: ASGIApp, prefix: str = "/v1/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        settings: Settings = scope["app"].state.settings
        if authorised(settings, header.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        refusal = JSONResponse({"detail": UNAUTHORISED}, 401, headers=CHALLENGE)
        await refusal(scope, receive, send)
