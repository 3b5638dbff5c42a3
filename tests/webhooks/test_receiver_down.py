"""A receiver that is down for a minute (README, "Webhooks"): real workers, beat, the API
and the provider sandbox, and a receiver in this test whose port stays closed for
:data:`DOWN` seconds while its events are made and refused. Every event waits (pending,
never failed, nothing received), and once the port is open again every one arrives,
exactly once, under its one ``webhook-id``, signed with the endpoint's secret.

The retry waits are shortened to seconds (the defaults space the first few attempts
over minutes), long enough that a minute and more of refusals spends only part of them.
The test mostly waits: the system is idle while the port is closed.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from harness.receiver import WebhookReceiver
from store.deliveries import DeliveryStore
from tests.conftest import System
from tests.e2e.test_webhooks import EVENTS, by_event, enqueue, keys_for, register
from tests.services import wait_until
from webhooks import verify_webhook

#: seconds the receiver's port stays closed once the system is up
DOWN = 60.0
#: a refused attempt is tried again within seconds; 20 waits (190 s) outlast the
#: minute down and a busy machine's delays, so none is failed meanwhile
WAITS = ",".join(["2", "4", "8"] + ["10"] * 17)
EVENTS_OF = 5


@pytest.mark.slow
@pytest.mark.timeout(DOWN + 420)  # the minute down, on a machine others keep busy
def test_a_receiver_down_for_a_minute_gets_every_event_once_it_is_back(make_system) -> None:
    system: System = make_system(
        webhook_allow_private="true", webhook_retry_waits=WAITS, sweep_grace="600"
    )
    receiver = WebhookReceiver().start()
    (auth,) = keys_for(system, "shop").values()
    system.start(workers=1, beat=True)
    hook, secret = register(system, auth, receiver.url)
    receiver.stop()
    closed_at = time.time()
    try:
        ids = enqueue(system, auth, EVENTS_OF, 300)
        system.wait_for(ids, {"delivered"}, timeout=90)
        deliveries = DeliveryStore(system.runtime.db)
        expected = {(i, event) for i in ids for event in EVENTS}

        def refused_a_minute() -> bool:
            log = deliveries.log(hook)
            assert {d["status"] for d in log} <= {"pending"}, log  # waiting, never failed
            return (
                time.time() - closed_at >= DOWN
                and len(log) == len(expected)
                and all(len(d["attempts"]) >= 3 for d in log)
            )

        wait_until(refused_a_minute, DOWN + 120, interval=1.0, what="a minute of refused attempts")
        assert receiver.snapshot() == []
        refused = [a for d in deliveries.log(hook) for a in d["attempts"]]
        assert all(a["status_code"] is None and not a["ok"] for a in refused)

        reopened = time.time()
        receiver.start()  # the same port again
        wait_until(
            lambda: {d["status"] for d in deliveries.log(hook)} == {"delivered"},
            90,
            interval=0.5,
            what="every event delivered once the receiver is back",
        )
        got = receiver.snapshot()
        arrivals = by_event(got)
        assert set(arrivals) == expected
        assert all(len(webhook_ids) == 1 for webhook_ids in arrivals.values()), arrivals
        posts = Counter(each.webhook_id for each in got)
        assert set(posts.values()) == {1}, posts  # exactly once: no event sent twice
        for each in got:
            assert each.at >= reopened
            verify_webhook(secret, each.headers, each.body, now=each.at)
            assert json.loads(each.body)["data"]["to"].count("*") == 4  # masked
        logged = {d["webhook_id"]: d for d in deliveries.log(hook)}
        assert set(logged) == set(posts)
        for delivery in logged.values():
            *before, last = delivery["attempts"]
            assert last["ok"] and not any(a["ok"] for a in before)
    finally:
        receiver.stop()
