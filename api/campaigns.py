"""``/v1/campaigns``: create from a recipients list or CSV text, read progress, control."""

from __future__ import annotations

import csv
import io
import math
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, StringConstraints, model_validator

from api.auth import Reader, Sender, require_api_key
from api.key_limits import KeyLimits, OverQuota
from api.keyring import Grant
from api.notifications import errors_body
from api.schemas import MAX_TEXT, StorableModel
from providers.base import FieldError, InvalidRequest
from tasks.campaigns import campaigns, control, intake
from tasks.requests import parse_time
from tasks.runtime import Runtime

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["campaigns"])

MAX_INLINE = 100_000
#: campaigns in one page of ``GET /v1/campaigns``
MAX_PAGE = 200
#: a recipient's column name and value: a template variable, never a document
Column = Annotated[str, StringConstraints(max_length=200)]
Cell = Annotated[str, StringConstraints(max_length=MAX_TEXT)] | int | float | None


class CampaignIn(StorableModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(max_length=32)
    name: str = Field("", max_length=200)
    template: str | None = Field(None, max_length=128)
    content: str | None = Field(None, max_length=2000)
    options: dict[str, Any] = Field(default_factory=dict)
    rate: str | None = Field(None, max_length=32)
    at: str | float | None = None
    cron: str | None = Field(None, max_length=64)
    #: recipients inline: [{"mobile": "...", "<variable>": "..."}]
    recipients: list[dict[Column, Cell]] | None = Field(None, max_length=MAX_INLINE)
    #: or the same as CSV text (a ``mobile`` column, one column per variable)
    csv: str | None = Field(None, max_length=20_000_000)

    @model_validator(mode="after")
    def _one_source(self) -> CampaignIn:
        if (self.recipients is None) == (self.csv is None):
            raise ValueError("give recipients or csv (one of them)")
        return self


@router.post(
    "/campaigns",
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "bad input, nothing stored"}},
)
def create_campaign(body: CampaignIn, request: Request, grant: Sender) -> Any:
    """Bounded before anything is stored: rows per campaign (``NOTIFYQ_CAMPAIGN_MAX_ROWS``,
    422 naming ``recipients`` or ``csv``), campaigns per API key per minute
    (``NOTIFYQ_CAMPAIGNS_PER_MINUTE``, 429 with ``Retry-After``) and the key's daily
    quota (its recipients, all or none; the rejected ones are given back); the body's
    size was bounded before it was parsed (413). The campaign and its rows belong to the
    key."""
    runtime: Runtime = request.app.state.runtime
    limits: KeyLimits = request.app.state.key_limits
    errors: list[FieldError] = []
    at = parse_time(body.at, "at", errors)
    if body.csv is not None:
        unreadable = csv_error(body.csv)
        if unreadable:
            errors.append(FieldError("csv", unreadable))
    too_many = row_bound_error(body, runtime.settings.campaign_max_rows)
    if too_many is not None:
        errors.append(too_many)
    if errors:
        return JSONResponse(errors_body(errors), status_code=422)
    wait = request.app.state.campaign_rate.admit(
        grant.namespace, runtime.redis_now(), uuid.uuid4().hex
    )
    if wait > 0:
        message = f"at most {runtime.settings.campaigns_per_minute} campaigns a minute per API key"
        return JSONResponse(
            errors_body([FieldError("body", message)]),
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    spec = intake.CampaignSpec(
        provider=body.provider,
        name=body.name,
        template=body.template,
        content=body.content,
        options=body.options,
        rate=body.rate,
        at=at,
        cron=body.cron,
        owner=grant.name,
    )
    units = recipients(body) if grant.daily_quota is not None else 0
    try:
        with limits.notifications(grant, units) as allowance:
            if body.csv is not None:
                result = intake.import_campaign(runtime, spec, io.StringIO(body.csv, newline=""))
            else:
                result = intake.import_records(runtime, spec, body.recipients or [])
            allowance.stored(result.total)
    except OverQuota as exc:
        return exc.refusal.response()
    except InvalidRequest as exc:
        return JSONResponse(errors_body(exc.errors), status_code=422)
    return {
        "id": result.id,
        "status": result.status,
        "accepted": result.total,
        "rejected": result.rejected,
        "errors": result.errors,
    }


def recipients(body: CampaignIn) -> int:
    """How many recipients the campaign names (CSV rows but the header): what it asks of
    a key's daily quota before its rows are read."""
    if body.recipients is not None:
        return len(body.recipients)
    try:
        return max(0, sum(1 for _ in csv.reader(io.StringIO(body.csv or "", newline=""))) - 1)
    except csv.Error:
        return 0  # unreadable: refused by the import, nothing stored


def row_bound_error(body: CampaignIn, limit: int) -> FieldError | None:
    """More recipients than a campaign may hold, named by field. CSV rows are counted by
    line breaks first (an upper bound: the header and quoted breaks count too) and read
    as CSV only when that bound is over the limit."""
    message = f"at most {limit} recipients per campaign"
    if body.recipients is not None:
        return FieldError("recipients", message) if len(body.recipients) > limit else None
    text = body.csv or ""
    if text.count("\n") <= limit:
        return None
    try:
        rows = sum(1 for _ in csv.reader(io.StringIO(text, newline=""))) - 1  # the header
    except csv.Error:
        return None  # csv_error names it
    return FieldError("csv", message) if rows > limit else None


def csv_error(text: str) -> str | None:
    """Why the CSV cannot be read whole, or None. The import stores the campaign before
    it reads the rows, so a file the csv module gives up on half-way (a field past its
    limit) is read once here first and refused whole. Only a file longer than that
    limit can hold such a field, so the common, small file is not read twice. The text
    is read with ``newline=""``, as the csv module wants, so a bare CR ends a row
    instead of being an error."""
    if len(text) <= csv.field_size_limit():
        return None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for _ in reader:
            pass
    except csv.Error as exc:
        return f"line {reader.line_num}: {exc}"
    return None


@router.get("/campaigns")
def list_campaigns(
    request: Request,
    grant: Reader,
    before: int | None = Query(None, ge=1, lt=2**63),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
) -> Any:
    """The key's campaigns (an admin key's: all), newest first; ``next`` is the
    ``before`` of the following page."""
    runtime: Runtime = request.app.state.runtime
    rows = campaigns(runtime).page(owner=grant.owner_filter, before=before, limit=limit)
    return {
        "campaigns": [control.summary(row) for row in rows],
        "next": rows[-1].id if len(rows) == limit else None,
    }


@router.get("/campaigns/{campaign_id}")
def get_campaign(campaign_id: int, request: Request, grant: Reader) -> Any:
    """404 for another key's campaign, as for one that does not exist."""
    view = (
        control.progress(request.app.state.runtime, campaign_id, owner=grant.owner_filter)
        if 0 < campaign_id < 2**63
        else None
    )
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign")
    return view


def _control(action: str, campaign_id: int, request: Request, grant: Grant) -> Any:
    runtime: Runtime = request.app.state.runtime
    owner = grant.owner_filter
    if not 0 < campaign_id < 2**63 or campaigns(runtime).get(campaign_id, owner=owner) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign")
    try:
        getattr(control, action)(runtime, campaign_id, owner=owner, by=grant.name)
    except control.CampaignStateError as exc:
        return JSONResponse({"errors": [{"field": "id", "message": str(exc)}]}, status_code=409)
    return control.progress(runtime, campaign_id, owner=owner)


@router.post("/campaigns/{campaign_id}/pause")
def pause_campaign(campaign_id: int, request: Request, grant: Sender) -> Any:
    return _control("pause", campaign_id, request, grant)


@router.post("/campaigns/{campaign_id}/resume")
def resume_campaign(campaign_id: int, request: Request, grant: Sender) -> Any:
    return _control("resume", campaign_id, request, grant)


@router.post("/campaigns/{campaign_id}/cancel")
def cancel_campaign(campaign_id: int, request: Request, grant: Sender) -> Any:
    return _control("cancel", campaign_id, request, grant)
