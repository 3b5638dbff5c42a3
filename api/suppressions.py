"""``/v1/suppressions``: numbers never to be called (an opt-out, or a provider's "bad
number"), listed with the number masked; added and lifted by the number itself. The
list spans every service's numbers, so these routes need an admin key; a campaign's
count of suppressed rows is its owner's to ask."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from api.auth import ADMIN_ONLY, Admin, Reader, require_api_key
from api.schemas import StorableModel
from providers.base import FieldError, InvalidRequest, mask
from store.keys import Scope
from tasks import suppressions
from tasks.campaigns import campaigns
from tasks.runtime import Runtime

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["suppressions"])

#: the number in ``DELETE /v1/suppressions/{to}`` and in ``?to=``: it reaches the access
#: log as part of the request line
_NUMBER_IN_URL = re.compile(r"(/v1/suppressions/|/v1/suppressions\?(?:[^\s\"]*&)?to=)([^/?&\s\"]+)")


def _masked(raw: str) -> str:
    digits = re.sub(r"\D", "", unquote(raw))
    return mask("+" + digits if digits.startswith("86") else digits) or "***"


def _masked_url(text: str) -> str:
    return _NUMBER_IN_URL.sub(lambda m: m[1] + _masked(m[2]), text)


class MaskNumbersInUrls(logging.Filter):
    """``DELETE /v1/suppressions/13800138000`` → ``…/suppressions/138****8000`` in the
    access log (a full number never reaches a log), for the one route of the API whose
    URL holds a number."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _masked_url(a) if isinstance(a, str) and "/v1/suppressions" in a else a
                for a in record.args
            )
        if isinstance(record.msg, str) and "/v1/suppressions" in record.msg:
            record.msg = _masked_url(record.msg)
        return True


logging.getLogger("uvicorn.access").addFilter(MaskNumbersInUrls())


class SuppressionIn(StorableModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(max_length=32)
    #: one provider only; none: every provider (a person's opt-out)
    provider: str | None = Field(None, max_length=32)
    reason: str | None = Field(None, max_length=64)


def _errors(errors: list[FieldError]) -> JSONResponse:
    body = {"errors": [{"field": e.field, "message": e.message} for e in errors]}
    return JSONResponse(body, status_code=422)


@router.post(
    "/suppressions",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "already suppressed"}, 422: {"description": "bad input"}},
)
def add(body: SuppressionIn, request: Request, response: Response, _: Admin) -> Any:
    """Suppress a number (for every provider unless one is named): its notifications end
    ``failed``, reason ``suppressed:<reason>``, without a call."""
    runtime: Runtime = request.app.state.runtime
    try:
        view, created = suppressions.add(
            runtime, body.to, provider=body.provider, reason=body.reason, source="api"
        )
    except InvalidRequest as exc:
        return _errors(exc.errors)
    if not created:
        response.status_code = status.HTTP_200_OK
    return view.public()


@router.get("/suppressions", responses={422: {"description": "bad input"}})
def list_suppressions(
    request: Request,
    grant: Reader,
    provider: str | None = Query(None, max_length=32),
    to: str | None = Query(None, max_length=32),
    campaign_id: int | None = Query(None, ge=1, lt=2**63),
    after: int = Query(0, ge=0, lt=2**63),
    limit: int = Query(100, ge=1, le=suppressions.MAX_PAGE),
) -> Any:
    """A page of suppressions (``next`` is the ``after`` of the following page); ``to``
    asks about one number: both need an admin key (the list spans every key's
    numbers). ``campaign_id`` counts that campaign's suppressed rows, for the key that
    made it (404 for another's, as for one that does not exist)."""
    runtime: Runtime = request.app.state.runtime
    try:
        if campaign_id is not None:
            owner = grant.owner_filter
            if campaigns(runtime).get(campaign_id, owner=owner) is None:
                return JSONResponse({"detail": "no such campaign"}, status_code=404)
            count = suppressions.suppressed_in_campaign(runtime, campaign_id, owner=owner)
            return {"campaign_id": campaign_id, "suppressed": count}
        if not grant.may(Scope.ADMIN):
            return JSONResponse({"detail": ADMIN_ONLY}, status_code=403)
        if to is not None:
            found = suppressions.lookup(runtime, to)
            return {"suppressions": [v.public() for v in found], "next": None}
        views, cursor = suppressions.page(runtime, provider=provider, after=after, limit=limit)
    except InvalidRequest as exc:
        return _errors(exc.errors)
    return {"suppressions": [v.public() for v in views], "next": cursor}


@router.delete(
    "/suppressions/{to}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"description": "the number is not suppressed"}, 422: {"description": ""}},
)
def remove(
    to: str, request: Request, _: Admin, provider: str | None = Query(None, max_length=32)
) -> Response:
    """Lift a number's suppressions (one provider's with ``?provider=``, else all)."""
    runtime: Runtime = request.app.state.runtime
    try:
        removed = suppressions.remove(runtime, to, provider=provider)
    except InvalidRequest as exc:
        return _errors(exc.errors)
    if not removed:
        return JSONResponse({"detail": "the number is not suppressed"}, status_code=404)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
