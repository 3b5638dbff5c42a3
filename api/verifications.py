"""``/v1/verifications``: create a code and send it, check it, read it back.

The code is never in an answer: a create answers its id, status and expiry; a check
answers the verdict. Bad input is ``422 {errors: [{field, message}]}`` with nothing
stored or sent; too many codes for a number ``429`` with ``Retry-After``; without
``NOTIFYQ_VERIFY_SECRET`` ``503``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from api.auth import Reader, Sender, require_api_key
from api.key_limits import KeyLimits, OverQuota
from api.schemas import StorableModel
from providers.base import FieldError, InvalidRequest
from tasks.runtime import Runtime
from tasks.verifications import (
    NoSuchVerification,
    TooManyRequests,
    VerificationsDisabled,
    check_verification,
    create_verification,
    verification_view,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["verifications"])

MAX_ID = 2**63


class VerificationIn(StorableModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(max_length=32)
    channel: Literal["sms", "voice"]
    #: SMS text with {$var}; ihuyi text with {code}; jumdata template id
    template: str | None = Field(None, max_length=500)
    provider: str | None = Field(None, max_length=32)
    length: int | None = Field(None, ge=4, le=8)
    ttl: int | None = Field(None, ge=60, le=3600)
    #: a new code for the same number and purpose cancels the old one
    purpose: str | None = Field(None, max_length=64)
    #: with channel sms: also call with the code this many seconds later, if unchecked
    voice_after: int | None = Field(None, ge=10, le=3600)


class CheckIn(StorableModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=16)


def _errors(errors: list[FieldError], code: int = 422) -> JSONResponse:
    body = {"errors": [{"field": e.field, "message": e.message} for e in errors]}
    return JSONResponse(body, status_code=code)


def _disabled(exc: VerificationsDisabled) -> JSONResponse:
    return _errors([FieldError("settings", str(exc))], status.HTTP_503_SERVICE_UNAVAILABLE)


@router.post(
    "/verifications",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        422: {"description": "bad input, nothing stored or sent"},
        429: {"description": "too many codes for this number: see Retry-After"},
        503: {"description": "NOTIFYQ_VERIFY_SECRET is not set"},
    },
)
def create(body: VerificationIn, request: Request, grant: Sender) -> Any:
    """A new code, sent by SMS or a voice call; answered once stored and handed on. It
    and its notifications belong to the key, and count against its daily quota."""
    runtime: Runtime = request.app.state.runtime
    limits: KeyLimits = request.app.state.key_limits
    calls = 1 if body.voice_after is None else 2
    try:
        with limits.notifications(grant, calls) as allowance:
            created = create_verification(
                body.to,
                body.channel,
                template=body.template,
                provider=body.provider,
                length=body.length,
                ttl=body.ttl,
                purpose=body.purpose,
                voice_after=body.voice_after,
                owner=grant.name,
                runtime=runtime,
            )
            allowance.stored(calls)
    except OverQuota as exc:
        return exc.refusal.response()
    except InvalidRequest as exc:
        return _errors(exc.errors)
    except TooManyRequests as exc:
        wait = math.ceil(exc.retry_after)
        return JSONResponse(
            {
                "errors": [{"field": "to", "message": "too many codes for this number"}],
                "retry_after": wait,
            },
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(wait)},
        )
    except VerificationsDisabled as exc:
        return _disabled(exc)
    return created.public()


@router.post(
    "/verifications/{verification_id}/check",
    responses={
        404: {"description": "no such verification"},
        422: {"description": "the code is not 4 to 8 digits (not counted)"},
    },
)
def check(verification_id: int, body: CheckIn, request: Request, grant: Sender) -> Any:
    """``approved``, ``denied`` (with ``attempts_left``), ``expired`` or
    ``too_many_attempts``; an approved code is never approved again. Another key's
    verification is 404, as one that does not exist, and its attempts are not spent."""
    runtime: Runtime = request.app.state.runtime
    if not 0 < verification_id < MAX_ID:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such verification")
    try:
        return check_verification(
            verification_id,
            body.code,
            owner=grant.owner_filter,
            by=grant.name,
            runtime=runtime,
        ).public()
    except InvalidRequest as exc:
        return _errors(exc.errors)
    except NoSuchVerification:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such verification") from None
    except VerificationsDisabled as exc:
        return _disabled(exc)


@router.get(
    "/verifications/{verification_id}", responses={404: {"description": "no such verification"}}
)
def show(verification_id: int, request: Request, grant: Reader) -> Any:
    """The verification (number masked, never the code) and its notification's status;
    404 for another key's."""
    runtime: Runtime = request.app.state.runtime
    view = (
        verification_view(runtime, verification_id, owner=grant.owner_filter)
        if 0 < verification_id < MAX_ID
        else None
    )
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such verification")
    return view
