"""Provider callbacks: ``/callbacks/{token}/…``. Each answers ``success`` only after the
receipt is committed (a provider that hears anything else pushes again, up to 3 times),
is idempotent (a repeat changes nothing), refuses a malformed body with 400 and stores
nothing, refuses an oversized one with 413, and hides behind the token (404 if wrong).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import PlainTextResponse

from api.auth import require_callback_token
from providers.ihuyi import Ihuyi
from tasks.runtime import Runtime
from worker.store import NewReceipt
from worker.store.templates import TemplateStore

router = APIRouter(
    prefix="/callbacks/{token}", dependencies=[Depends(require_callback_token)], tags=["callbacks"]
)

SUCCESS = PlainTextResponse("success")


async def read_form(request: Request) -> Mapping[str, Any]:
    """The form (or JSON object) body, within the size limit; 400/413 otherwise."""
    limit = request.app.state.settings.callback_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not UTF-8") from None
    if "json" in request.headers.get("content-type", ""):
        import json

        try:
            data = json.loads(text)
        except ValueError:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not a JSON object")
        return data
    try:
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not a form") from None


def bad(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, reason)


@router.post("/ihuyi/receipt", response_class=PlainTextResponse)
async def ihuyi_receipt(request: Request) -> PlainTextResponse:
    form = await read_form(request)
    try:
        receipt = Ihuyi.parse_receipt(form)
    except (KeyError, ValueError, TypeError):
        raise bad("not an ihuyi receipt") from None
    runtime: Runtime = request.app.state.runtime
    record = NewReceipt(
        "ihuyi", receipt.ref, receipt.delivered, receipt.code, receipt.message, dict(receipt.detail)
    )
    await _in_thread(request, lambda: runtime.receipts.record([record]))
    return SUCCESS


@router.post("/ihuyi/template", response_class=PlainTextResponse)
async def ihuyi_template(request: Request) -> PlainTextResponse:
    form = await read_form(request)
    try:
        audit = Ihuyi.parse_template_audit(form)
    except (KeyError, ValueError, TypeError):
        raise bad("not an ihuyi template audit") from None
    runtime: Runtime = request.app.state.runtime
    templates = TemplateStore(runtime.db)
    state = "approved" if audit.approved else "rejected"
    await _in_thread(
        request,
        lambda: templates.upsert("ihuyi", audit.template_id, state=state, message=audit.message),
    )
    return SUCCESS


async def _in_thread(request: Request, work: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(work)
