"""Provider callbacks: ``/callbacks/{token}/…``. Each answers ``success`` only after the
receipt is committed — or, while the store is away, journalled in Redis and applied when
it is back (tasks/journal.py, api/journal_replay.py); a provider that hears anything
else pushes again, up to 3 times — is idempotent (a repeat changes nothing), refuses a
malformed body with 400 and stores nothing (malformed: no reference, or not the
provider's shape — a status or code the documents do not list is *not* malformed: it is
stored, with its raw value), refuses an oversized one with 413, and hides behind the
token (404 if wrong).

"Malformed" includes what the ledger could not store: text with NUL or a lone
surrogate (PostgreSQL and UTF-8 refuse them) and a reference longer than the ledger's
column. No provider sends those; a body that holds them is refused whole, as any other
body we cannot read, rather than failing at the insert with a 500 — which a provider
would take as "try again", three times over.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from api.auth import require_callback_token
from api.coalesce import GroupWriter
from api.schemas import unstorable
from providers.apispace import ApispaceSms
from providers.base import DeliveryReceipt
from providers.ihuyi import Ihuyi, TemplateAudit
from providers.itniotech import Itniotech
from providers.jumdata import Jumdata
from store import NewReceipt
from store.availability import store_away
from store.schema import ProviderTemplate, Receipt
from store.templates import TemplateStore
from tasks import suppressions
from tasks.journal import REPORT_PAGE, CallbackJournal
from tasks.runtime import Runtime

router = APIRouter(
    prefix="/callbacks/{token}", dependencies=[Depends(require_callback_token)], tags=["callbacks"]
)

SUCCESS = PlainTextResponse("success")
#: the ledger's widths for what a callback names: longer cannot be one of ours
MAX_REF: int = Receipt.__table__.c.provider_ref.type.length  # type: ignore[attr-defined]
MAX_TEMPLATE_ID: int = ProviderTemplate.__table__.c.template_id.type.length  # type: ignore[attr-defined]


async def read_form(request: Request) -> Mapping[str, Any]:
    """The form (or JSON object) body, within the size limit; 400/413 otherwise."""
    data = await read_body(request, arrays=False)
    return cast(Mapping[str, Any], data)  # arrays=False admits a form or an object only


async def read_body(request: Request, *, arrays: bool) -> Mapping[str, Any] | list[Any]:
    """The form or JSON body, within the size limit; 400/413 otherwise. With ``arrays``
    a JSON array is taken too: providers that batch their receipts push arrays."""
    data = await _decode(request, arrays=arrays)
    if unstorable(data) is not None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body holds text we cannot store")
    return data


async def _decode(request: Request, *, arrays: bool) -> Mapping[str, Any] | list[Any]:
    limit = request.app.state.settings.callback_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "body too large")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "body too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not UTF-8") from None
    if "json" in request.headers.get("content-type", ""):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not JSON") from None
        if isinstance(data, dict) or (arrays and isinstance(data, list)):
            return data
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not a JSON object")
    try:
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not a form") from None


def bad(reason: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, reason)


def check_refs(receipts: list[DeliveryReceipt]) -> None:
    """A reference longer than the ledger keeps names no call of ours: refuse the push."""
    if any(len(r.ref) > MAX_REF for r in receipts):
        raise bad("a receipt's reference is longer than any we hand out")


@dataclass(frozen=True)
class Push:
    """A provider's receipt push: how its body becomes receipts, and whether it may be
    a JSON array (providers that batch their receipts push arrays)."""

    provider: str
    parse: Callable[[Any], list[DeliveryReceipt]]
    arrays: bool = True


#: each receipt route's push, by the route's name (also the journal's, tasks/journal.py)
PUSHES = {
    "ihuyi": Push("ihuyi", lambda form: [Ihuyi.parse_receipt(form)], arrays=False),
    "jumdata": Push("jumdata", lambda form: [Jumdata.parse_callback(form)], arrays=False),
    "apispace-sms": Push("apispace-sms", ApispaceSms.parse_receipts),
    "itniotech": Push("itniotech", Itniotech.parse_receipts),
}
TEMPLATE_AUDIT = "ihuyi/template"


@router.post("/ihuyi/receipt", response_class=PlainTextResponse)
async def ihuyi_receipt(request: Request) -> PlainTextResponse:
    """ihuyi's delivery receipt (form): ``code`` 2 answered; any other code, documented
    or not (-7…), is stored undelivered with that code and answered ``success``, so
    ihuyi stops pushing rather than giving up on a receipt we refused."""
    return await _receipts(request, "ihuyi")


@router.post("/ihuyi/template", response_class=PlainTextResponse)
async def ihuyi_template(request: Request) -> PlainTextResponse:
    form = await read_form(request)
    audit = template_audit(form)
    runtime: Runtime = request.app.state.runtime
    await _kept(
        request, TEMPLATE_AUDIT, form, lambda: run_in_threadpool(_store_audit, runtime, audit)
    )
    return SUCCESS


@router.post("/jumdata", response_class=PlainTextResponse)
async def jumdata_result(request: Request) -> PlainTextResponse:
    """jumdata's call result (form, or JSON): ``callStatus`` 0 answered; 1, or any value
    the seed does not list, not (kept raw) — stored and answered ``success`` alike."""
    return await _receipts(request, "jumdata")


@router.post("/apispace-sms", response_class=PlainTextResponse)
async def apispace_sms_reports(request: Request) -> PlainTextResponse:
    """APISpace's SMS delivery reports (ASSUMED push, JSON object or array): one receipt
    per number, matched by ``msgId`` and number (``providers.apispace.sms_ref``)."""
    return await _receipts(request, "apispace-sms")


@router.post("/itniotech", response_class=PlainTextResponse)
async def itniotech_results(request: Request) -> PlainTextResponse:
    """itniotech's call results (ASSUMED push, JSON object or array), by ``voiceId``."""
    return await _receipts(request, "itniotech")


async def _receipts(request: Request, route: str) -> PlainTextResponse:
    """Parse every receipt of a push before storing any (one bad entry refuses the whole
    push, so the provider repeats it whole), store them in one transaction — with the
    pushes that arrive at the same moment (:func:`receipt_writer`) — then say
    ``success``."""
    push = PUSHES[route]
    body = await read_body(request, arrays=push.arrays)
    receipts = parsed(push, body)
    writer: GroupWriter[Pushed, Pushed] = request.app.state.receipt_writer
    await _kept(request, route, body, lambda: writer.submit((push.provider, receipts)))
    return SUCCESS


def parsed(push: Push, body: Any) -> list[DeliveryReceipt]:
    """The push's receipts; 400 if it is not the provider's shape or names no call of ours."""
    try:
        receipts = push.parse(body)
    except (KeyError, ValueError, TypeError):
        raise bad(f"not a {push.provider} receipt push") from None
    check_refs(receipts)
    return receipts


def template_audit(form: Mapping[str, Any]) -> TemplateAudit:
    try:
        audit = Ihuyi.parse_template_audit(form)
    except (KeyError, ValueError, TypeError):
        raise bad("not an ihuyi template audit") from None
    if len(audit.template_id) > MAX_TEMPLATE_ID:
        raise bad("not an ihuyi template id")
    return audit


def apply(runtime: Runtime, route: str, body: Any) -> None:
    """Store a callback that ``route`` took (``body`` as decoded): what a replay of the
    journal does, the same as the route would have."""
    if route == TEMPLATE_AUDIT:
        _store_audit(runtime, template_audit(body))
        return
    if route.startswith(REPORT_PAGE):  # a pulled page: the next poll parses it
        runtime.receipts.journal(route.removeprefix(REPORT_PAGE), body)
        return
    push = PUSHES[route]
    _store_receipts(runtime, push.provider, parsed(push, body))


#: one push: its provider and its receipts
Pushed = tuple[str, list[DeliveryReceipt]]


def receipt_writer(runtime: Runtime) -> GroupWriter[Pushed, Pushed]:
    """The pushes that arrive while one group is written are stored together by the next
    one, in one transaction and one thread hand-off: a provider pushes a receipt for every
    call, as many requests as the sends themselves. A repeat changes nothing whether it
    shares a group or not (:meth:`store.receipts.ReceiptStore.store`: the first of a
    reference is stored, every move is a compare-and-set); a group that fails is written
    again one push at a time, so one bad push never refuses another. With the store away
    every push of the group hears it at once and is journalled (:func:`_kept`)."""
    return GroupWriter(
        lambda pushes: _store_pushes(runtime, pushes),
        what="receipt pushes",
        after=lambda pushes: _learn(runtime, pushes),
        fails_all=store_away,
    )


def _store_pushes(runtime: Runtime, pushes: list[Pushed]) -> list[Pushed]:
    runtime.receipts.record(
        [
            NewReceipt(provider, r.ref, r.delivered, r.code, r.message, dict(r.detail))
            for provider, receipts in pushes
            for r in receipts
        ]
    )
    return pushes


def _learn(runtime: Runtime, pushes: list[Pushed]) -> None:
    """Committed: a receipt that says the number is bad (ihuyi -5, vacant) suppresses it
    (tasks/suppressions.py); a failure here costs the lesson, never the receipt."""
    by_provider: dict[str, list[DeliveryReceipt]] = {}
    for provider, receipts in pushes:
        by_provider.setdefault(provider, []).extend(receipts)
    for provider, receipts in by_provider.items():
        suppressions.learn_receipts(runtime, provider, receipts)


def _store_receipts(runtime: Runtime, provider: str, receipts: list[DeliveryReceipt]) -> None:
    _learn(runtime, _store_pushes(runtime, [(provider, receipts)]))


def _store_audit(runtime: Runtime, audit: TemplateAudit) -> None:
    state = "approved" if audit.approved else "rejected"
    TemplateStore(runtime.db).upsert("ihuyi", audit.template_id, state=state, message=audit.message)


async def _kept(
    request: Request, route: str, body: Any, store: Callable[[], Awaitable[object]]
) -> None:
    """Stored, or — while the store is away — journalled in Redis (tasks/journal.py);
    either way kept before the caller answers ``success``. With Redis away too, the
    error goes on: the answer is a 503 (api/outages.py) and the provider tries again."""
    try:
        await store()
    except Exception as error:
        if not store_away(error):
            raise
        request.app.state.dependencies.store.failed(error)
        journal: CallbackJournal = request.app.state.callback_journal
        await run_in_threadpool(journal.write, route, body)
