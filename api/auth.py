"""Bearer keys for ``/v1`` and the token in callback paths, both compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

from worker.settings import Settings


def constant_time_in(candidate: str, secrets: list[str]) -> bool:
    found = False
    for secret in secrets:  # no early exit: the time does not tell which key matched
        found |= hmac.compare_digest(candidate.encode(), secret.encode())
    return found


def require_api_key(request: Request) -> None:
    settings: Settings = request.app.state.settings
    keys = [k.get_secret_value() for k in settings.api_keys]
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if not keys or scheme.lower() != "bearer" or not key or not constant_time_in(key.strip(), keys):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid 'Authorization: Bearer <key>' is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_callback_token(request: Request, token: str) -> None:
    settings: Settings = request.app.state.settings
    expected = settings.callback_token
    if expected is None or not constant_time_in(token, [expected.get_secret_value()]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
