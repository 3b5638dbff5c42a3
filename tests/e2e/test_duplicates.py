"""The end-to-end proof of docs/duplicates.md: every dispatch message arrives three times, side by side,
at two worker processes, while the provider takes 2 s to answer — and each phone rings
once.

Celery over Redis delivers at least once; a redelivery or a re-drive can put two or
three copies of one message in two threads at the same moment. Each copy reads the row
as ``queued``; only one may place the call, and the losers must neither push the
notification back (a cap slot taken and kept, a ``deferred`` written over ``sending``)
nor call again.
"""

from __future__ import annotations

from collections import Counter

import pytest

from store import NewNotification
from tasks.publish import publish_dispatch
from tests.conftest import System

NUMBERS = [f"+86138001380{i:02d}" for i in range(20)]


@pytest.mark.slow
def test_three_copies_of_every_dispatch_on_two_workers_call_each_number_once(
    make_system,
) -> None:
    system: System = make_system(sweep_grace="600", sending_timeout="120")
    system.start(workers=2, concurrency=8, beat=True, sandbox_args=("--latency-ms", "2000"))
    rt = system.runtime
    stored = rt.notifications.insert(
        [
            NewNotification(provider="ihuyi", to=number, content=f"您的订单{i}已发货。")
            for i, number in enumerate(NUMBERS)
        ]
    )
    ids = [row.id for row in stored]
    # three copies of each message, published back to back so that they are taken side
    # by side by the two workers' threads
    for notification_id in ids:
        for _ in range(3):
            publish_dispatch(rt.celery, [notification_id], batch=1)

    system.wait_for(ids, {"delivered"}, timeout=120)

    calls = Counter(call["number"] for call in system.ledger("ihuyi") if call["placed"])
    doubled = {number: n for number, n in calls.items() if n != 1}
    assert not doubled, f"numbers called more than once: {doubled}\n{system.stack.report()}"
    assert len(calls) == len(NUMBERS)
    for notification_id in ids:
        events = rt.notifications.events(notification_id)
        steps = [str(getattr(e.to_status, "value", e.to_status)) for e in events]
        assert steps[-2:] == ["sent", "delivered"] and steps.count("sent") == 1, steps
        # the bug's signature: a copy refused by the slot its twin took wrote a deferral
        capped = [e.reason for e in events if e.reason and e.reason.startswith("cap:")]
        assert not capped, f"#{notification_id} went {steps} ({capped}): a duplicate pushed it back"
