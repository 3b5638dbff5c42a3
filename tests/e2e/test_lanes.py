"""Codes first (README "Codes first"), end to end through real workers, Redis and
the sandbox. Behaviour, not timing: what the tests compare is the *order* of the calls
at the sandbox and the history of each row, whatever the machine's speed.

- A campaign's rows already queued in Redis: codes and single notifications posted
  afterwards reach the sandbox before every one of them.
- A campaign that has filled a provider's rate: a code for that provider is admitted on
  its first try (never deferred for the rate) and called while the campaign's rows
  wait; the campaign's rows are the ones deferred.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from scheduler.priority import Priority
from store.schema import Event, Notification, Verification
from tasks.campaigns import campaigns
from tasks.campaigns.intake import CampaignSpec, import_campaign
from tasks.campaigns.release import fan_out
from tasks.publish import publish_dispatch
from tests.conftest import TEST_CREDENTIALS, System
from tests.services import wait_until
from worker.queues import BULK_QUEUE, NORMAL_QUEUE, URGENT_QUEUE

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}
SECRET = "verify-secret-lanes-e2e"
TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"


def post(system: System, path: str, body: dict[str, Any]) -> int:
    answer = httpx.post(f"{system.api_url}{path}", json=body, headers=AUTH, timeout=30)
    assert answer.status_code == 202, answer.text
    return int(answer.json()["id"])


def code_for(system: System, number: str) -> int:
    """A verification code by SMS: the id of the notification that carries it."""
    verification = post(system, "/v1/verifications", {"to": number, "channel": "sms"})
    with system.runtime.db.read() as conn:
        return int(
            conn.execute(
                select(Verification.notification_id).where(Verification.id == verification)
            ).scalar_one()
        )


def start_campaign(system: System, provider: str, content: str, csv: str) -> int:
    spec = CampaignSpec(provider=provider, content=content)
    return import_campaign(system.runtime, spec, io.StringIO(csv)).id


def queue_whole_campaign(system: System, campaign_id: int) -> int:
    """Start the campaign (one fan-out, as beat runs it) and put every one of its rows in
    the bulk queue at once, however few seconds of work a fan-out keeps ahead: the
    backlog a code must never wait behind. Returns how many rows are queued."""
    rt = system.runtime
    queued = fan_out(rt)["released"]
    rest = campaigns(rt).release(campaign_id, 1_000_000, rt.redis_now())
    publish_dispatch(rt.celery, rest, batch=rt.settings.dispatch_batch, priority=Priority.BULK)
    return queued + len(rest)


def call_order(system: System) -> list[str]:
    """The national numbers the sandbox was asked to reach, in the order it was asked."""
    calls = sorted(system.ledger(), key=lambda call: call["seq"])
    return [str(call["number"])[-11:] for call in calls if call["number"]]


def events_of(system: System, ids: Sequence[int]) -> dict[int, list[tuple[str, str | None]]]:
    with system.runtime.db.read() as conn:
        rows = conn.execute(
            select(Event.notification_id, Event.to_status, Event.reason)
            .where(Event.notification_id.in_(list(ids)))
            .order_by(Event.id)
        )
        out: dict[int, list[tuple[str, str | None]]] = {i: [] for i in ids}
        for row in rows:
            out[row.notification_id].append((str(row.to_status.value), row.reason))
        return out


def test_codes_and_singles_reach_the_provider_before_campaign_rows_queued_before_them(
    make_system,
) -> None:
    system: System = make_system(verify_secret=SECRET, dispatch_batch="10")
    with system.stack.together():
        system.sandbox("--receipt-delay", "0.2")
        system.stack.api(system.api_port)
    rows = [f"139{i:08d}" for i in range(50)]
    csv = "mobile,name\n" + "".join(f"{n},客户{i}\n" for i, n in enumerate(rows))
    campaign = start_campaign(system, "ihuyi", "您好{name}，明天上午十点开会。", csv)
    assert queue_whole_campaign(system, campaign) == len(rows)  # all of it in Redis, as bulk
    assert system.runtime.redis.llen(BULK_QUEUE) == len(rows) // 10

    codes = [f"1370013700{i}" for i in range(3)]
    singles = [f"1380013800{i}" for i in range(3)]
    for code, single in zip(codes, singles, strict=True):
        code_for(system, code)
        post(system, "/v1/notifications", {"provider": "ihuyi", "to": single, "content": TEXT})
    # codes are published before they are answered, singles within the linger: both now
    # stand behind the whole campaign
    assert system.runtime.redis.llen(URGENT_QUEUE) == 3
    wait_until(
        lambda: system.runtime.redis.llen(NORMAL_QUEUE) >= 1, 10, interval=0.01, what="singles out"
    )

    # one worker thread: the order it takes the messages in is the order of the calls
    with system.stack.together():
        system.stack.worker("--concurrency", "1")

    def probes_and_a_row_called() -> bool:
        called = set(call_order(system))
        return set(codes + singles) <= called and not called.isdisjoint(rows)

    wait_until(probes_and_a_row_called, 180, interval=0.2, what="every probe and a row called")
    order = call_order(system)
    first_bulk = min(order.index(n) for n in rows if n in order)
    probes = [order.index(n) for n in codes + singles]
    assert max(probes) < first_bulk, f"a campaign row was called before a code or single: {order}"
    # and the codes before the singles posted alongside them
    assert max(order.index(n) for n in codes) < min(order.index(n) for n in singles)


def test_a_code_is_admitted_at_once_while_a_campaign_saturates_its_providers_rate(
    make_system,
) -> None:
    # ten a minute: a slot frees every 6 s, so nothing below is helped by the clock
    system: System = make_system(
        verify_secret=SECRET, apispace_sms_rate="10/minute", dispatch_batch="20"
    )
    with system.stack.together():  # no beat: what the rate defers stays deferred
        system.sandbox("--receipt-delay", "0.2")
        system.stack.api(system.api_port)
        system.stack.worker("--concurrency", "4")
    rows = [f"139{i:08d}" for i in range(20)]
    csv = "mobile,var\n" + "".join(f"{n},{i}\n" for i, n in enumerate(rows))
    content = "【notifyq】您本期账单{$var}元，请按时还款。"
    campaign = start_campaign(system, "apispace-sms", content, csv)
    assert fan_out(system.runtime)["released"] == len(rows)
    with system.runtime.db.read() as conn:
        ids = list(
            conn.execute(
                select(Notification.id).where(Notification.campaign_id == campaign)
            ).scalars()
        )
    settled = system.wait_for(ids, {"sent", "delivered", "deferred"}, timeout=60)
    # bulk filled its share of the burst (8 of 10) and no more: the rest is deferred
    deferred = [i for i, status in settled.items() if status == "deferred"]
    assert len(deferred) == 12, settled
    assert {reasons[-1][1] for reasons in events_of(system, deferred).values()} == {
        "rate:apispace-sms"
    }

    numbers = ["13700137000", "13700137001"]
    codes = [code_for(system, number) for number in numbers]
    system.wait_for(codes, {"sent", "delivered"}, timeout=60)
    for code, history in events_of(system, codes).items():
        statuses = [status for status, _ in history]
        assert statuses[:2] == ["sending", "sent"], f"code {code} waited: {history}"
        row = system.runtime.notifications.get(code)
        assert row is not None and row.attempts == 1 and row.priority == "urgent"
    assert set(numbers) <= set(call_order(system))
    assert system.statuses(deferred) == dict.fromkeys(deferred, "deferred")


def test_notifyq_send_takes_a_priority_and_names_the_field_of_a_bad_one(make_system) -> None:
    system: System = make_system()  # no worker: the message stays in its queue
    sent = system.cli(
        "send", "ihuyi", "--to", "13800138000", "--content", TEXT, "--priority", "urgent", "--json"
    )
    assert sent.returncode == 0, sent.stderr
    created = json.loads(sent.stdout)["id"]
    row = system.runtime.notifications.get(created)
    assert row is not None and row.priority == "urgent"
    assert system.runtime.redis.llen(URGENT_QUEUE) == 1
    refused = system.cli(
        "send", "ihuyi", "--to", "13800138001", "--content", TEXT, "--priority", "soon"
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("error: priority:"), refused.stderr
