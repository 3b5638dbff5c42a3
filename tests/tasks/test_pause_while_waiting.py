"""A campaign paused while its rows wait for a worker's call budget (tasks/budget.py):
the rows go back to the campaign's pool when their units come, and are never called.
The budget can be held for seconds by the calls ahead of them; a pause must not wait
for every row already taken from the queue to be sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from store.campaigns import IMPORTING, RUNNING, CampaignRow
from tasks.campaigns import campaigns
from tasks.campaigns.control import pause
from tasks.dispatch import Report, dispatch_ids
from tests.conftest import System, make_url_db
from tests.services import wait_until

NUMBER = "13800138021"
TEXT = "您的预约明天开始。"


@pytest.fixture
def system(tmp_path: Path, redis_base: str) -> Iterator[System]:
    url = make_url_db(redis_base, 14)
    redis.Redis.from_url(url).flushdb()
    system = System(tmp_path, url, f"sqlite:///{tmp_path / 'notifyq.db'}")
    system.sandbox()
    wait_until(lambda: system.ledger() is not None, 30, what="the sandbox")
    yield system
    system.close()


def running_campaign_row(system: System) -> tuple[int, int]:
    """A running campaign's one released row: (campaign id, notification id)."""
    rt = system.runtime
    now = rt.redis_now()
    store = campaigns(rt)
    campaign = store.create(
        name="paused while waiting",
        provider="ihuyi",
        template=None,
        content=TEXT,
        options={},
        route=None,
        rate=None,
        cron=None,
        next_run_at=None,
    )
    store.add_notifications(store.get(campaign), [CampaignRow(1, NUMBER, TEXT, ())], not_before=now)
    store.set_status(campaign, RUNNING, expect=[IMPORTING], started_at=now, runs=1)
    (row,) = store.release(campaign, 10, now)
    return campaign, row


def test_rows_waiting_for_the_call_budget_are_held_by_a_pause_made_meanwhile(
    system: System,
) -> None:
    rt = system.runtime
    campaign, row = running_campaign_row(system)
    budget = rt.call_budget
    held = budget.take(budget.capacity)  # every unit busy with calls ahead of this row
    reports: list[Report] = []
    worker = threading.Thread(target=lambda: reports.append(dispatch_ids(rt, [row])))
    worker.start()
    try:
        wait_until(lambda: budget.waiting == 1, 30, interval=0.01, what="the task to wait")
        pause(rt, campaign)
    finally:
        budget.give(held)
    worker.join(60)
    assert not worker.is_alive()

    with rt.db.read() as conn:
        (stored,) = rt.notifications.load(conn, [row])
    assert stored.status == "queued", "back in the campaign's pool, to go again on resume"
    assert system.ledger() == [], "no call for a row of a paused campaign"
    assert [report.skipped for report in reports] == [1]
