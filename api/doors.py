"""What one caller may ask of the API: how large a body, how many campaigns a minute, and
which idempotency keys are its own.

Each bound answers before the expensive part: a body over its limit is refused while it
is still being received (never parsed, never buffered whole; the rest read and dropped
so that the client reads its 413), a campaign over its rate before its rows are read.
Every refusal is a 4xx that says which bound and by how much.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Any

import redis
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.settings import Settings
from store import RouteLeg

CAMPAIGNS_PATH = "/v1/campaigns"
#: the most of an oversized body read and dropped after its 413 (see refuse_and_drain)
DRAIN_MAX = 64 * 1024 * 1024
#: and for how long at the most
DRAIN_SECONDS = 30.0
#: an idempotency key as stored: ``<scope>:<key>``, within the ledger's 255 characters
STORED_KEY_MAX = 255


class BodyTooLarge(HTTPException):
    """The body passed its limit while being received. An HTTPException so FastAPI's
    body reader lets it through (any other error there becomes its own 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def body_limit(settings: Settings, method: str, path: str) -> int:
    """Campaign creation carries a recipients list and has its own, larger, limit."""
    if method == "POST" and path.rstrip("/") == CAMPAIGNS_PATH:
        return settings.campaign_max_bytes
    return settings.api_max_bytes


def too_large_message(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"


def too_large(limit: int) -> JSONResponse:
    errors = [{"field": "body", "message": too_large_message(limit)}]
    return JSONResponse({"errors": errors}, status_code=413)


async def refuse_and_drain(
    limit: int, scope: Scope, receive: Receive, send: Send, *, body_ended: bool = False
) -> None:
    """413, then the rest of the body read and discarded before the answer ends.

    A client that writes its whole request before it reads (most do) would otherwise
    meet a server that has stopped reading: it blocks on a full socket, or — once the
    server closes with its bytes unread — reads a reset instead of the 413. So the
    answer is sent whole but left open (``more_body``) while up to :data:`DRAIN_MAX`
    bytes, for up to :data:`DRAIN_SECONDS`, are read and dropped; then it ends and the
    connection closes (``Connection: close``: what is past the bound is never parsed as
    a next request). A client that asked ``Expect: 100-continue`` has sent no body: it
    is told 413 and nothing is read; nor is anything once the body's last part has come
    (``body_ended``): a server's ``receive`` then waits for the client to hang up, which
    it does only after the answer has ended."""
    answer = too_large(limit)
    await send(
        {
            "type": "http.response.start",
            "status": answer.status_code,
            "headers": [*answer.raw_headers, (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": answer.body, "more_body": True})
    if not body_ended and (b"expect", b"100-continue") not in scope["headers"]:
        await drain(receive)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def drain(receive: Receive) -> None:
    """Read and drop the request body up to the bounds (see :func:`refuse_and_drain`)."""
    read = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while read <= DRAIN_MAX:
                message = await receive()
                if message["type"] != "http.request":
                    return
                read += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


class BodyLimit:
    """413 for a ``/v1`` body over its limit, before anything parses it: a declared
    ``Content-Length`` over the limit is refused unread; a chunked body is counted as it
    arrives and refused the moment it passes the limit. Sits inside :class:`ApiKeyGate`,
    so a stranger is told 401 whatever the size of what it sent."""

    def __init__(self, app: ASGIApp, prefix: str = "/v1/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["app"].state.settings, scope["method"], scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await refuse_and_drain(limit, scope, receive, send)
                return
        received = 0
        started = False
        refused = False
        ended = False

        async def counted() -> Message:
            nonlocal received, refused, ended
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                ended = not message.get("more_body", False)
                if received > limit:
                    refused = True
                    raise BodyTooLarge(limit)
            return message

        async def sending(message: Message) -> None:
            """The app's answer; once the body was refused (the app's own 413, from
            FastAPI's body reader), kept open while the rest is drained, as
            :func:`refuse_and_drain` does."""
            nonlocal started
            started = started or message["type"] == "http.response.start"
            if refused and message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
            if refused and message["type"] == "http.response.body" and not message.get("more_body"):
                await send({**message, "more_body": True})
                if not ended:
                    await drain(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except BodyTooLarge:
            if started:  # pragma: no cover - every /v1 route reads its body before answering
                raise
            await refuse_and_drain(limit, scope, receive, send, body_ended=ended)


def scoped_key(scope: str, key: str | None) -> str | None:
    """The idempotency key as stored: the caller's key under its API key's namespace
    (api/keyring.py ``Grant.namespace``), so two API keys never share one. A key too
    long to fit beside its namespace is stored as its hash (``#`` marks it), which names
    the same request just as well."""
    if key is None:
        return None
    stored = f"{scope}:{key}"
    if len(stored) <= STORED_KEY_MAX:
        return stored
    return f"{scope}:#{hashlib.sha256(key.encode()).hexdigest()}"


def payload(row_or_draft: Any) -> str:
    """What a notification was asked to do, in one canonical form: compared when an
    idempotency key is used again (the number as normalised, so spellings agree)."""
    return json.dumps(
        {
            "provider": row_or_draft.provider,
            "to": row_or_draft.to,
            "template": row_or_draft.template,
            "content": row_or_draft.content,
            "params": [str(p) for p in row_or_draft.params or ()],
            "options": dict(row_or_draft.options or {}),
            "route": [
                leg.to_json() if isinstance(leg, RouteLeg) else dict(leg)
                for leg in row_or_draft.route or ()
            ],
            "priority": str(row_or_draft.priority),
        },
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )


# A sliding log of one API key's campaign creations in Redis, one atomic script: trims
# what is older than the window, then admits (and records) or says when the oldest frees.
_RATE = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return '0'
"""
WINDOW = 60.0


class CampaignRate:
    """At most ``NOTIFYQ_CAMPAIGNS_PER_MINUTE`` campaigns per API key in any 60 s, counted
    on Redis's clock so every API process agrees."""

    def __init__(self, client: redis.Redis, limit: int) -> None:
        self.client = client
        self.limit = limit
        self.script = client.register_script(_RATE)

    def admit(self, scope: str, now: float, token: str) -> float:
        """0 when admitted (and counted), else the seconds until one more may be."""
        wait = self.script(
            keys=[f"notifyq:api:campaigns:{scope}"], args=[now, WINDOW, self.limit, token]
        )
        return float(wait)
