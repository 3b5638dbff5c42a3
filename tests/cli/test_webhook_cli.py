"""``notifyq webhook list | deliveries | retry`` (README, "Webhooks"): the operator sees
every key's endpoints and each delivery's attempts, replays a failed delivery under its
same webhook-id, and bad input exits 2 naming the field."""

from __future__ import annotations

import json

from store import Change, Expect, NewNotification, Status
from store.deliveries import AttemptResult, DeliveryStore
from store.webhooks import EndpointStore
from tests.conftest import System


def test_the_operator_lists_reads_the_log_and_replays_a_failed_delivery(make_system) -> None:
    system: System = make_system()
    rt = system.runtime
    endpoint, _ = EndpointStore(rt.db).create("shop", "https://93.184.216.34/hooks")
    (made,) = rt.notifications.insert(
        [NewNotification("ihuyi", "+8613800138000", content="您的订单已发出", owner="shop")]
    )
    for status in (Status.SENDING, Status.SENT):
        row = rt.notifications.get(made.id)
        rt.notifications.transition([Change(made.id, status, Expect.row(row))])
    deliveries = DeliveryStore(rt.db)
    (logged,) = deliveries.log(endpoint.id)
    (pending,) = deliveries.pending([logged["id"]], now=logged["created_at"])
    out_of_retries = AttemptResult(500, "boom", 0.2)
    moment = logged["created_at"] + 1
    deliveries.record([(pending, out_of_retries)], now=moment, waits=(), disable_after=1e9)

    listed, failed, bad_status, no_such = system.cli_many(
        ("webhook", "list", "--json"),
        ("webhook", "deliveries", str(endpoint.id), "--status", "failed", "--json"),
        ("webhook", "deliveries", str(endpoint.id), "--status", "lost"),
        ("webhook", "retry", str(endpoint.id), str(logged["id"] + 1)),
    )
    (shown,) = json.loads(listed.stdout)["webhooks"]
    assert (shown["id"], shown["owner"], shown["disabled"]) == (endpoint.id, "shop", False)
    assert "secret" not in listed.stdout
    (entry,) = json.loads(failed.stdout)["deliveries"]
    assert (entry["webhook_id"], entry["status"]) == (logged["webhook_id"], "failed")
    assert [(a["status_code"], a["answer"]) for a in entry["attempts"]] == [(500, "boom")]
    assert (bad_status.returncode, bad_status.stderr.strip()) == (
        2,
        "error: status: one of pending, delivered, failed",
    )
    assert no_such.returncode == 2 and no_such.stderr.startswith("error: delivery_id:")

    retried = system.cli("webhook", "retry", str(endpoint.id), str(logged["id"]))
    assert retried.returncode == 0, retried.stderr
    (again,) = deliveries.pending([logged["id"]], now=logged["created_at"])
    assert again.message_id == logged["webhook_id"]
