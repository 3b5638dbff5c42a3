"""``/ui`` in a real browser (Playwright driving Debian's headless Chromium) against a
running system fed by the sandbox: notifications by provider and status, what waits and
why (a cap, a closed calling window), a campaign paused and resumed from the page, an
open circuit, and one number's caps — behind the API key, numbers masked. The page's
screenshot is what docs/operator-page.png shows (NOTIFYQ_UI_SCREENSHOT=path saves it).

Chromium is installed by .ci/run (scripts/ensure-chromium); where it is missing, this
test is skipped and says so."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tasks.campaigns import campaigns
from tasks.enqueue import enqueue
from tests.conftest import TEST_CREDENTIALS, System
from tests.services import wait_until

CHROMIUM = os.environ.get("NOTIFYQ_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = TEST_CREDENTIALS["NOTIFYQ_API_KEYS"].split(",")[0]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)),
        reason=f"Chromium is not installed at {CHROMIUM} (.ci/run installs Debian's: "
        "scripts/ensure-chromium)",
    ),
]


def closed_window(zone: str) -> str:
    """A one-minute calling window two hours from now: closed for the whole test."""
    opening = datetime.now(UTC).astimezone(ZoneInfo(zone)) + timedelta(hours=2)
    return f"{opening:%H:%M}-{opening + timedelta(minutes=1):%H:%M}"


@pytest.fixture
def system(make_system: Any) -> System:
    system: System = make_system(
        jumdata_window=closed_window("Asia/Shanghai"), circuit_cooldown="3600"
    )
    return system.start(workers=1, concurrency=4, beat=True)


def test_the_operator_page_shows_what_waits_and_controls_campaigns(
    system: System, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    rt = system.runtime
    # ihuyi: one number three times, its 1/second and 3/minute caps hold the later ones
    sent = [
        enqueue("ihuyi", "13800138000", content=f"您的快递{i}已到。", runtime=rt) for i in range(4)
    ]
    # jumdata: its calling window is closed, so these wait for it
    auth = {"Authorization": f"Bearer {API_KEY}"}
    created = httpx.post(
        f"{system.api_url}/v1/campaigns",
        json={
            "provider": "jumdata",
            "name": "repayment reminder",
            "template": "1001",
            "recipients": [{"mobile": f"1370013{i:04d}", "amount": "9633"} for i in range(5)],
        },
        headers=auth,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    # itniotech: an account-wide error paused it
    rt.circuit.open("itniotech", "itniotech:balance", rt.redis_now())
    system.wait_for([sent[0].id], {"delivered"}, timeout=60)
    # three calls placed: the number's 3/minute cap is full until the first ages out
    wait_until(
        lambda: len([c for c in system.ledger("ihuyi") if c["placed"]]) == 3,
        60,
        what="three calls to one number",
    )
    wait_until(
        lambda: (
            system.status(sent[3].id) == "deferred"
            and rt.notifications.count_by_status().get("deferred", 0) >= 6
        ),
        60,
        what="the cap and window deferrals",
    )

    assert httpx.get(f"{system.api_url}/ui", timeout=10).status_code == 401
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(
                http_credentials={"username": "operator", "password": API_KEY},
                viewport={"width": 1280, "height": 900},
            )
            page = context.new_page()
            page.goto(f"{system.api_url}/ui")
            assert page.title() == "notifyq — operator"
            # by provider and status
            delivered = page.locator('tr[data-provider="ihuyi"] td[data-status="delivered"]')
            assert int(delivered.inner_text()) >= 1
            # what waits, and why
            waiting = page.locator("#waiting").inner_text()
            assert "cap:ihuyi:" in waiting, waiting
            assert "window:jumdata" in waiting, waiting
            # the priority lanes: the singles went as normal, their waits measured
            normal = page.locator('tr[data-lane="normal"]').inner_text()
            assert " ms" in normal and "notifyq" in normal, normal
            assert page.locator("tr[data-lane]").count() == 3
            # circuits
            assert page.locator('tr[data-circuit="itniotech"] td.bad').inner_text() == "open"
            assert page.locator('tr[data-circuit="ihuyi"] td.good').inner_text() == "closed"
            # a campaign, paused and resumed from the page
            row = page.locator(f"#campaign-{campaign_id}")
            assert "repayment reminder" in row.inner_text()
            assert "/5" in row.inner_text()
            page.on("dialog", lambda dialog: dialog.dismiss())
            with page.expect_navigation():
                row.locator('button[data-action="pause"]').click()
            assert page.locator(f"#campaign-{campaign_id} .state").inner_text() == "paused"
            assert campaigns(rt).get(campaign_id).status == "paused"
            with page.expect_navigation():
                page.locator(f'#campaign-{campaign_id} button[data-action="resume"]').click()
            assert page.locator(f"#campaign-{campaign_id} .state").inner_text() != "paused"
            assert campaigns(rt).get(campaign_id).status != "paused"
            # one number's caps, looked up by a form post (never in a URL), shown masked
            page.fill('input[name="number"]', "+86 138 0013 8000")
            with page.expect_navigation():
                page.click("#caps button")
            caps = page.locator("#caps").inner_text()
            assert "138****8000" in caps, caps
            assert "13800138000" not in page.content()
            minute = page.locator('tr[data-cap="ihuyi 3/minute"]').inner_text()
            assert "3/3" in minute and "full until" in minute, minute
            shot = tmp_path / "operator-page.png"  # the whole page, with the caps looked up
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            target = os.environ.get("NOTIFYQ_UI_SCREENSHOT")
            if target:
                shutil.copyfile(shot, target)
        finally:
            browser.close()
    # a stranger's page cannot press the buttons: the page's own header is required
    refused = httpx.post(
        f"{system.api_url}/ui/campaigns/{campaign_id}/cancel", auth=("x", API_KEY), timeout=10
    )
    assert refused.status_code == 403
    assert campaigns(rt).get(campaign_id).status != "cancelled"
