"""``/ui``: the operator page, what Sidekiq's Web UI or Bull Board are for their queues —
but for notifications (Flower shows tasks, not notifications).

One server-rendered page: notifications by provider and status, what waits and why
(deferred or retrying, by reason, with the next release), campaigns with their progress
and pause/resume/cancel, each provider's circuit, and one number's caps. It refreshes
itself every 10 s.

Behind an admin key (it shows every key's notifications and campaigns): HTTP Basic with
the key as the password (a browser asks for it) or ``Authorization: Bearer``; any
other valid key is told 403. The campaign buttons post with a header no other site's
page can send without our consent (``X-Notifyq-UI``), so a logged-in browser cannot be
made to press them from elsewhere. A number to look up is posted, never put in the URL,
so it stays out of access logs; numbers on the page are masked.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from functools import partial
from html import escape
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from api import ui_data
from api.keyring import Grant, KeyRing
from store.keys import Scope
from tasks.campaigns import campaigns
from tasks.campaigns import control as campaign_control
from tasks.runtime import Runtime

router = APIRouter(prefix="/ui", tags=["operations"], include_in_schema=False)
CHALLENGE = {"WWW-Authenticate": 'Basic realm="notifyq operator page", charset="UTF-8"'}
UI_HEADER = "x-notifyq-ui"
ACTIONS = ("pause", "resume", "cancel")


def ui_grant(ring: KeyRing, header: str) -> Grant | None:
    """Basic (any user name, an API key as the password) or Bearer."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return ring.grant(header)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, _, password = decoded.partition(":")
    return ring.grant(f"Bearer {password}")


def require_login(request: Request) -> Grant:
    grant = ui_grant(request.app.state.keyring, request.headers.get("authorization", ""))
    if grant is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "login required", headers=CHALLENGE)
    if not grant.may(Scope.ADMIN):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the operator page needs an admin key")
    return grant


@router.get("", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    require_login(request)
    runtime: Runtime = request.app.state.runtime
    return HTMLResponse(await run_in_threadpool(render, runtime, None, None))


@router.post("/caps", response_class=HTMLResponse)
async def caps(request: Request, number: str = Form("", max_length=32)) -> HTMLResponse:
    require_login(request)
    runtime: Runtime = request.app.state.runtime
    normalised = ui_data.normalise(number)
    if normalised is None:
        html = await run_in_threadpool(render, runtime, None, "not a phone number we can read")
        return HTMLResponse(html, status_code=422)
    lookup = await run_in_threadpool(ui_data.number_caps, runtime, normalised)
    return HTMLResponse(await run_in_threadpool(render, runtime, lookup, None))


@router.post("/campaigns/{campaign_id}/{action}")
async def control(campaign_id: int, action: str, request: Request) -> Any:
    grant = require_login(request)
    if request.headers.get(UI_HEADER) != "1":
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the page's own requests carry {UI_HEADER}")
    runtime: Runtime = request.app.state.runtime
    if action not in ACTIONS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such action")
    if not 0 < campaign_id < 2**63 or campaigns(runtime).get(campaign_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such campaign")
    try:
        await run_in_threadpool(
            partial(getattr(campaign_control, action), by=grant.name), runtime, campaign_id
        )
    except campaign_control.CampaignStateError as exc:
        return JSONResponse({"errors": [{"field": "id", "message": str(exc)}]}, status_code=409)
    return await run_in_threadpool(campaign_control.progress, runtime, campaign_id)


# -- rendering --------------------------------------------------------------------------------


def when(moment: float | None, zone: Any) -> str:
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, zone).strftime("%Y-%m-%d %H:%M:%S")


def render(runtime: Runtime, lookup: ui_data.NumberCaps | None, error: str | None) -> str:
    zone = runtime.settings.zone
    table = ui_data.by_status(runtime)
    statuses = [s for s in ui_data.STATUS_ORDER if any(s in row for row in table.values())]
    sections = [
        _statuses(table, statuses),
        _lanes(ui_data.lanes(runtime)),
        _waiting(ui_data.waiting(runtime), zone),
        _campaigns(ui_data.campaigns(runtime)),
        _circuits(ui_data.circuits(runtime), zone),
        _caps(lookup, error, zone),
    ]
    return PAGE.format(
        timezone=escape(runtime.settings.timezone),
        now=when(ui_data.now(), zone),
        body="\n".join(sections),
    )


def _statuses(table: dict[str, dict[str, int]], statuses: list[str]) -> str:
    head = "".join(f"<th>{escape(s)}</th>" for s in statuses)
    rows = "".join(
        f'<tr data-provider="{escape(p)}"><th>{escape(p)}</th>'
        + "".join(f'<td data-status="{s}">{counts.get(s, 0)}</td>' for s in statuses)
        + "</tr>"
        for p, counts in table.items()
    )
    return (
        '<section id="statuses"><h2>Notifications by provider and status</h2>'
        f"<table><tr><th>provider</th>{head}</tr>{rows}</table></section>"
    )


def _lanes(rows: list[ui_data.Lane]) -> str:
    cells = "".join(
        f'<tr data-lane="{escape(r.priority)}"><th>{escape(r.priority)}</th>'
        f"<td><code>{escape(r.queue)}</code></td>"
        f'<td data-depth="{r.depth}">{r.depth}</td>'
        f"<td>{'—' if r.p99 is None else f'{r.p99 * 1000:,.0f} ms'}</td>"
        f"<td>{r.samples}</td></tr>"
        for r in rows
    )
    return (
        '<section id="lanes"><h2>Priority lanes</h2><table><tr><th>class</th><th>queue</th>'
        "<th>messages waiting</th><th>p99 enqueue → call (5 min)</th><th>calls</th></tr>"
        f"{cells}</table></section>"
    )


def _waiting(rows: list[ui_data.Waiting], zone: Any) -> str:
    if not rows:
        body = '<p class="quiet">Nothing deferred or retrying.</p>'
    else:
        body = (
            "<table><tr><th>provider</th><th>status</th><th>reason</th><th>count</th>"
            "<th>next release</th></tr>"
            + "".join(
                f"<tr><td>{escape(w.provider)}</td><td>{w.status}</td>"
                f"<td><code>{escape(w.reason)}</code></td><td>{w.count}</td>"
                f"<td>{when(w.next_release, zone)}</td></tr>"
                for w in rows
            )
            + "</table>"
        )
    return f'<section id="waiting"><h2>What waits, and why</h2>{body}</section>'


def _campaigns(rows: list[ui_data.CampaignRow]) -> str:
    if not rows:
        return '<section id="campaigns"><h2>Campaigns</h2><p class="quiet">None yet.</p></section>'
    items = []
    for c in rows:
        percent = round(100 * c.done / c.total) if c.total else 100
        detail = ", ".join(f"{s} {n}" for s, n in sorted(c.counts.items()))
        buttons = "".join(
            f'<button data-action="{a}" data-campaign="{c.id}">{a}</button>' for a in ACTIONS
        )
        items.append(
            f'<tr id="campaign-{c.id}"><td>#{c.id}</td><td>{escape(c.name)}</td>'
            f'<td>{escape(c.provider)}</td><td class="state">{escape(c.status)}</td>'
            f'<td><div class="bar"><div style="width:{percent}%"></div></div>'
            f'{c.done}/{c.total}</td><td class="quiet">{escape(detail)}</td>'
            f"<td>{buttons}</td></tr>"
        )
    return (
        '<section id="campaigns"><h2>Campaigns</h2><table><tr><th>id</th><th>name</th>'
        "<th>provider</th><th>status</th><th>progress</th><th>by status</th><th></th></tr>"
        + "".join(items)
        + "</table></section>"
    )


def _circuits(rows: list[ui_data.CircuitRow], zone: Any) -> str:
    cells = "".join(
        f'<tr data-circuit="{escape(r.provider)}"><td>{escape(r.provider)}</td>'
        + (
            f'<td class="bad">open</td><td>{when(r.retry_at, zone)}</td>'
            f"<td>{escape(r.reason or '')}</td>"
            if r.open
            else '<td class="good">closed</td><td>—</td><td></td>'
        )
        + "</tr>"
        for r in rows
    )
    return (
        '<section id="circuits"><h2>Circuits</h2><table><tr><th>provider</th><th>state</th>'
        f"<th>retry at</th><th>why</th></tr>{cells}</table></section>"
    )


def _caps(lookup: ui_data.NumberCaps | None, error: str | None, zone: Any) -> str:
    form = (
        '<form method="post" action="/ui/caps"><input name="number" maxlength="32" '
        'placeholder="a phone number" required> <button>Show its caps</button>'
        "</form>"
    )
    title = "<h2>A number's caps</h2>"
    if error:
        return f'<section id="caps">{title}{form}<p class="bad">{escape(error)}</p></section>'
    if lookup is None:
        return f'<section id="caps">{title}{form}</section>'
    rows = []
    for provider, uses in lookup.by_provider.items():
        blocked = lookup.blocked_until.get(provider)
        for use in uses:
            state = f"full until {when(use.frees_at, zone)}" if use.frees_at else "room"
            rows.append(
                f'<tr data-cap="{escape(provider)} {escape(use.cap)}"><td>{escape(provider)}</td>'
                f"<td>{escape(use.cap)}</td><td>{use.used}/{use.amount}</td><td>{state}"
                + (f" · provider block until {when(blocked, zone)}" if blocked else "")
                + "</td></tr>"
            )
    recent = "".join(
        f"<tr><td>#{r['id']}</td><td>{escape(r['provider'])}</td><td>{r['status']}</td>"
        f"<td><code>{escape(r['reason'])}</code></td><td>{when(r['created_at'], zone)}</td></tr>"
        for r in lookup.recent
    )
    return (
        f'<section id="caps"><h2>A number\'s caps: {escape(lookup.number)}</h2>{form}'
        "<table><tr><th>provider</th><th>cap</th><th>used</th><th>state</th></tr>"
        + "".join(rows)
        + "</table><h3>Latest notifications to it</h3><table><tr><th>id</th><th>provider</th>"
        f"<th>status</th><th>reason</th><th>created</th></tr>{recent}</table></section>"
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>notifyq — operator</title>
<meta http-equiv="refresh" content="10">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }}
h1 {{ font-size: 1.4em; margin: 0 0 .2em; }} h2 {{ font-size: 1.1em; margin: 1.4em 0 .4em; }}
table {{ border-collapse: collapse; background: #fff; }}
th, td {{ border: 1px solid #ddd; padding: .25em .6em; text-align: left; }}
td[data-status] {{ text-align: right; font-variant-numeric: tabular-nums; }}
.quiet {{ color: #777; }} .bad {{ color: #b00020; font-weight: 600; }} .good {{ color: #137333; }}
.bar {{ display: inline-block; width: 120px; height: 10px; background: #eee;
  margin-right: .5em; vertical-align: middle; }}
.bar div {{ height: 100%; background: #4a7bd0; }}
button {{ margin-right: .3em; }} section {{ max-width: 1200px; }}
</style></head><body>
<h1>notifyq — operator page</h1>
<p class="quiet">{now} ({timezone}); refreshes every 10 s.</p>
{body}
<script>
document.querySelectorAll("button[data-action]").forEach(function (button) {{
  button.addEventListener("click", async function () {{
    const url = "/ui/campaigns/" + button.dataset.campaign + "/" + button.dataset.action;
    const answer = await fetch(url, {{method: "POST", headers: {{"X-Notifyq-UI": "1"}}}});
    if (!answer.ok) {{
      const body = await answer.json().catch(function () {{ return {{}}; }});
      alert((body.errors && body.errors[0].message) || body.detail || answer.status);
    }}
    location.reload();
  }});
}});
</script>
</body></html>
"""
