"""``/v1/notifications``: enqueue one or a batch, read one back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.auth import Reader, Sender, require_api_key
from api.coalesce import EnqueueCoalescer
from api.doors import payload, scoped_key
from api.key_limits import KeyLimits, OverQuota
from api.keyring import Grant
from api.schemas import (
    Accepted,
    BatchIn,
    BatchItem,
    BatchOut,
    Errors,
    FieldErrorOut,
    NotificationIn,
)
from providers.base import FieldError, InvalidRequest
from scheduler.availability import require_writable
from store import Enqueued
from tasks.enqueue import enqueue_many
from tasks.requests import RouteLeg, SendRequest, validate
from tasks.runtime import Runtime
from tasks.views import notification_view

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["notifications"])


def to_request(body: NotificationIn, grant: Grant) -> SendRequest:
    """The request of ``grant``'s key: it owns the notification, and its idempotency keys
    are its own."""
    return SendRequest(
        provider=body.provider,
        to=body.to,
        template=body.template,
        content=body.content,
        params=tuple(body.params),
        options=body.options,
        route=tuple(
            RouteLeg(
                leg.provider,
                template=leg.template,
                content=leg.content,
                params=tuple(leg.params),
                options=leg.options,
            )
            for leg in body.route
        ),
        idempotency_key=scoped_key(grant.namespace, body.idempotency_key),
        not_before=body.not_before,
        owner=grant.name,
        priority=body.priority,
    )


#: the answer to a key used again for a different request
REUSED = "this idempotency key was used for a different request"


def conflicts(runtime: Runtime, request: SendRequest, notification_id: int) -> bool:
    """Whether the notification an idempotency key named was asked for something other
    than ``request`` (which validated once already, so validates again)."""
    row = runtime.notifications.get(notification_id, owner=request.owner)
    if row is None:  # pragma: no cover - a key names a committed row of its own
        return False
    return payload(row) != payload(validate(request, runtime.providers))


def errors_body(errors: list[FieldError]) -> dict[str, Any]:
    return {"errors": [{"field": e.field, "message": e.message} for e in errors]}


def errors_out(errors: list[FieldError]) -> list[FieldErrorOut]:
    return [FieldErrorOut(field=e.field, message=e.message) for e in errors]


def pydantic_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    out = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"] if p != "body"]
        out.append(
            FieldError(
                prefix + ".".join(loc) if loc else prefix.rstrip(".") or "body", error["msg"]
            )
        )
    return out


@router.post(
    "/notifications",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses={
        200: {
            "model": Accepted,
            "description": "this API key's idempotency key named an earlier, identical request",
        },
        409: {"model": Errors, "description": "the idempotency key named a different request"},
        413: {"model": Errors},
        422: {"model": Errors},
    },
)
async def create_notification(
    body: NotificationIn,
    request: Request,
    grant: Sender,
) -> Any:
    """Stored and published together with the requests that arrive at the same moment
    (``api.coalesce``): answered, as ever, only once this one is committed."""

    coalescer: EnqueueCoalescer = request.app.state.enqueuer
    limits: KeyLimits = request.app.state.key_limits
    wanted = to_request(body, grant)
    try:
        async with limits.notifications_off_loop(grant, 1) as allowance:
            result = await coalescer.enqueue(wanted)
            allowance.stored(int(not isinstance(result, InvalidRequest) and result.created))
    except OverQuota as exc:
        return exc.refusal.response()
    if isinstance(result, InvalidRequest):
        return JSONResponse(errors_body(result.errors), status_code=422)
    code = status.HTTP_202_ACCEPTED
    if not result.created:
        runtime: Runtime = request.app.state.runtime
        if await run_in_threadpool(conflicts, runtime, wanted, result.id):
            return JSONResponse(
                errors_body([FieldError("idempotency_key", REUSED)]), status_code=409
            )
        code = status.HTTP_200_OK
    # the Accepted shape as a response of its own: nothing for FastAPI to validate again
    return JSONResponse({"id": result.id, "status": result.status.value}, status_code=code)


@router.post("/notifications:batch", response_model=BatchOut, responses={422: {"model": Errors}})
def create_batch(body: BatchIn, request: Request, grant: Sender) -> Any:
    """Up to 1,000 notifications; each is validated on its own and the answer lists, per
    item, its id or its errors. Valid items are stored in one transaction; a key's daily
    quota takes them all or none."""
    runtime: Runtime = request.app.state.runtime
    limits: KeyLimits = request.app.state.key_limits
    requests: list[SendRequest | None] = []
    items: list[BatchItem] = []
    for index, raw in enumerate(body.notifications):
        try:
            requests.append(to_request(NotificationIn.model_validate(raw), grant))
            items.append(BatchItem(index=index))
        except ValidationError as exc:
            requests.append(None)
            items.append(BatchItem(index=index, errors=errors_out(pydantic_errors(exc))))
    valid = [r for r in requests if r is not None]
    if valid:
        require_writable(runtime.redis)  # refusing writes: 503, nothing stored (api/outages.py)
    try:
        with limits.notifications(grant, len(valid)) as allowance:
            stored = enqueue_many(valid, runtime=runtime) if valid else []
            allowance.stored(sum(1 for r in stored if isinstance(r, Enqueued) and r.created))
    except OverQuota as exc:
        return exc.refusal.response()
    results = iter(stored)
    for item, req in zip(items, requests, strict=True):
        if req is None:
            continue
        result = next(results)
        if isinstance(result, InvalidRequest):
            item.errors = errors_out(result.errors)
        elif not result.created and conflicts(runtime, req, result.id):
            item.errors = errors_out([FieldError("idempotency_key", REUSED)])
        else:
            item.id, item.status, item.created = result.id, result.status.value, result.created
    accepted = sum(1 for i in items if i.id is not None)
    return BatchOut(accepted=accepted, rejected=len(items) - accepted, items=items)


@router.get(
    "/notifications/{notification_id}", responses={404: {"description": "no such notification"}}
)
def get_notification(notification_id: int, request: Request, grant: Reader) -> Any:
    """404 for another key's notification, as for one that does not exist."""
    runtime: Runtime = request.app.state.runtime
    if not 0 < notification_id < 2**63:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such notification")
    view = notification_view(runtime.notifications, notification_id, owner=grant.owner_filter)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such notification")
    return view
