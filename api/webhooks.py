"""``/v1/webhooks``: the endpoints a key is told of its notifications' fate at, their
delivery log, and replays (README, "Webhooks").

An endpoint belongs to the key that made it: another key's answers 404, as one that
does not exist. Its URL is refused (422 naming ``url``) when it resolves to an address
that is not public, unless ``NOTIFYQ_WEBHOOK_ALLOW_PRIVATE=true``; the delivery task
checks the address again each time it connects. The secret is in the answer that
makes it (and in a rotation's), never again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field

from api.auth import Reader, Sender, require_api_key
from api.schemas import StorableModel
from config.settings import Settings
from store.deliveries import DeliveryStatus, DeliveryStore
from store.webhooks import BadEndpoint, Endpoint, EndpointStore
from tasks.runtime import Runtime
from webhooks import UnsafeUrl, check_url
from webhooks.addresses import MAX_URL

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], tags=["webhooks"])

MAX_ID = 2**63
NOT_FOUND = "no such webhook"


class WebhookIn(StorableModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL)
    #: the event types to send (none: every one)
    events: list[str] | None = Field(None, max_length=20)
    description: str | None = Field(None, max_length=200)


def _invalid(field: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"field": field, "message": message}]}, status_code=422)


def _stores(request: Request) -> tuple[EndpointStore, DeliveryStore]:
    runtime: Runtime = request.app.state.runtime
    return EndpointStore(runtime.db), DeliveryStore(runtime.db)


def _own(request: Request, webhook_id: int, owner: str | None) -> Endpoint:
    """The endpoint, if it is the key's (or the key is an admin's); else 404."""
    found = _stores(request)[0].get(webhook_id, owner) if 0 < webhook_id < MAX_ID else None
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return found


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    responses={422: {"description": "bad input (a URL that is not public, an unknown event)"}},
)
def create(body: WebhookIn, request: Request, grant: Sender) -> Any:
    """A new endpoint for this key's events; the answer holds its signing secret
    (``whsec_…``), shown this once."""
    settings: Settings = request.app.state.settings
    try:
        url = check_url(body.url, allow_private=settings.webhook_allow_private)
    except UnsafeUrl as exc:
        return _invalid("url", str(exc))
    try:
        endpoint, secret = _stores(request)[0].create(
            grant.name, url, events=body.events, description=body.description
        )
    except BadEndpoint as exc:
        return _invalid(exc.field, exc.message)
    return {**endpoint.public(), "secret": secret}


@router.get("/webhooks")
def list_webhooks(request: Request, grant: Reader) -> Any:
    """The key's endpoints (an admin key: every key's), disabled ones saying so."""
    endpoints = _stores(request)[0].listed(grant.owner_filter)
    return {"webhooks": [endpoint.public() for endpoint in endpoints]}


@router.get("/webhooks/{webhook_id}", responses={404: {"description": NOT_FOUND}})
def show(webhook_id: int, request: Request, grant: Reader) -> Any:
    return _own(request, webhook_id, grant.owner_filter).public()


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": NOT_FOUND}},
)
def delete(webhook_id: int, request: Request, grant: Sender) -> Response:
    """The endpoint is gone with its deliveries: nothing more is sent to it."""
    endpoint = _own(request, webhook_id, grant.owner_filter)
    _stores(request)[0].delete(endpoint.id, grant.owner_filter)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/webhooks/{webhook_id}/rotate", responses={404: {"description": NOT_FOUND}})
def rotate(webhook_id: int, request: Request, grant: Sender) -> Any:
    """A new secret, shown this once; messages carry a signature by the old one too
    for ``NOTIFYQ_WEBHOOK_ROTATION_OVERLAP`` seconds, so a receiver can switch over."""
    settings: Settings = request.app.state.settings
    endpoint = _own(request, webhook_id, grant.owner_filter)
    overlap = settings.webhook_rotation_overlap
    secret = _stores(request)[0].rotate(endpoint.id, grant.owner_filter, overlap=overlap)
    if secret is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return {"id": endpoint.id, "secret": secret, "previous_secret_signs_for": overlap}


@router.get("/webhooks/{webhook_id}/deliveries", responses={404: {"description": NOT_FOUND}})
def deliveries(
    webhook_id: int,
    request: Request,
    grant: Reader,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    before: int | None = Query(None, ge=1, lt=MAX_ID),
    limit: int = Query(100, ge=1, le=500),
) -> Any:
    """Each event sent to the endpoint, newest first, with every attempt's time and
    answer (``before``: the id to page back from)."""
    endpoint = _own(request, webhook_id, grant.owner_filter)
    log = _stores(request)[1].log(endpoint.id, status=status_, limit=limit, before=before)
    return {"deliveries": log}


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {"description": "no such webhook or delivery"}},
)
def retry(webhook_id: int, delivery_id: int, request: Request, grant: Sender) -> Any:
    """Send the event again under its same ``webhook-id``, its retries starting over (an
    endpoint disabled for its failures is enabled again)."""
    endpoint = _own(request, webhook_id, grant.owner_filter)
    if not (0 < delivery_id < MAX_ID and _stores(request)[1].replay(endpoint.id, delivery_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such delivery")
    return {"id": delivery_id, "status": DeliveryStatus.PENDING.value}
