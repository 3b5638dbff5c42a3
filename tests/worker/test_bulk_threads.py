"""A worker whose threads bulk holds all it may still takes a code at once
(worker/queues.py, worker/lanes.py): one real worker of five threads, a campaign of
one-row messages against a provider that answers after seconds, and a code posted while
the campaign's calls are open. Behaviour, not timing: the code's ``sending`` comes
before any campaign row's ``sent`` (with every thread bulk, it could only start once a
campaign task had finished), and no more than four campaign rows were ever sending."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from store.schema import Event, Notification
from tasks.campaigns.intake import CampaignSpec, import_campaign
from tests.conftest import System
from tests.e2e.test_lanes import SECRET, code_for, queue_whole_campaign
from tests.services import wait_until

pytestmark = pytest.mark.slow

#: every provider answer takes this long: the campaign's calls stay open meanwhile
LATENCY_MS = "4000"


def test_a_worker_full_of_bulk_still_takes_a_code_at_once(make_system) -> None:
    system: System = make_system(verify_secret=SECRET, dispatch_batch="1")
    with system.stack.together():
        system.sandbox("--latency-ms", LATENCY_MS)
        system.stack.api(system.api_port)
        system.stack.worker("--concurrency", "5")  # bulk may hold four of them
    csv = "mobile,name\n" + "".join(f"139{i:08d},客户{i}\n" for i in range(10))
    spec = CampaignSpec(provider="ihuyi", content="您好{name}，明天上午十点开会。")
    campaign = import_campaign(system.runtime, spec, io.StringIO(csv)).id
    assert queue_whole_campaign(system, campaign) == 10  # ten bulk messages of one row

    def sending() -> int:
        with system.runtime.db.read() as conn:
            return len(
                conn.execute(
                    select(Notification.id).where(
                        Notification.campaign_id == campaign, Notification.status == "sending"
                    )
                ).all()
            )

    wait_until(lambda: sending() >= 4 or None, 60, interval=0.1, what="four campaign calls open")
    code = code_for(system, "13700137000")
    system.wait_for([code], {"sent", "delivered"}, timeout=60)

    with system.runtime.db.read() as conn:
        events = conn.execute(
            select(Event.notification_id, Event.to_status, Event.at).order_by(Event.at)
        ).all()
    code_sending = min(
        e.at for e in events if e.notification_id == code and e.to_status == "sending"
    )
    first_bulk_sent = min(
        (e.at for e in events if e.notification_id != code and e.to_status == "sent"),
        default=float("inf"),
    )
    assert code_sending < first_bulk_sent, "the code waited for a campaign task to finish"
    opened_before = {
        e.notification_id
        for e in events
        if e.notification_id != code and e.to_status == "sending" and e.at < first_bulk_sent
    }
    assert len(opened_before) == 4, f"bulk held {len(opened_before)} of the 5 threads"
