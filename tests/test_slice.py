"""The foundation's slice, end to end: CLI → store → Redis → a real Celery worker →
ihuyi in the sandbox over HTTP → the receipt pushed to our API → ``delivered``."""

from __future__ import annotations

import json

import httpx
import redis

from tests.conftest import System, assert_no_leaks

TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"
NUMBER_SPELLINGS = ("13800138000", "8613800138000", "+8613800138000", "138 0013 8000")


def test_send_reaches_delivered_through_the_pushed_receipt(make_system) -> None:
    system: System = make_system().start()
    sent = system.cli("send", "ihuyi", "--to", "+86 138 0013 8000", "--content", TEXT)
    assert sent.returncode == 0, sent.stderr
    notification_id = int(sent.stdout.strip())

    system.wait_for([notification_id], {"delivered"}, timeout=30)
    shown = system.cli("status", str(notification_id), "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["status"] == "delivered"
    assert view["to"] == "138****8000"
    assert [(e["from"], e["to"]) for e in view["events"]] == [
        ("queued", "sending"),
        ("sending", "sent"),
        ("sent", "delivered"),
    ]
    (call,) = system.ledger("ihuyi")
    assert (call["number"], call["code"], call["placed"]) == ("13800138000", "2", True)
    assert view["provider_ref"] == call["ref"]
    pushes = [p for p in system.sandbox_pushes() if p["ok"]]
    assert len(pushes) == 1

    assert_no_leaks(system.stack.logs() + sent.stdout + sent.stderr + shown.stdout)


def test_a_bad_number_exits_2_naming_the_field_and_stores_nothing(make_system) -> None:
    system: System = make_system()
    refused = system.cli("send", "ihuyi", "--to", "12345", "--content", "x")
    assert refused.returncode == 2
    assert refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: to:")
    assert system.runtime.notifications.count_by_status() == {}


def test_the_dispatch_message_carries_the_id_and_nothing_else(make_system) -> None:
    system: System = make_system()  # no worker: the message stays in Redis for us to read
    sent = system.cli("send", "ihuyi", "--to", "13800138000", "--content", TEXT)
    assert sent.returncode == 0, sent.stderr
    client = redis.Redis.from_url(system.env["NOTIFYQ_REDIS_URL"])
    (raw,) = client.lrange("notifyq", 0, -1)
    message = json.loads(raw)
    body = json.loads(__import__("base64").b64decode(message["body"]))
    assert body[0] == [[int(sent.stdout)]]
    assert body[1] == {}
    assert message["headers"]["task"] == "notifyq.dispatch"
    assert_no_leaks(raw.decode())


def test_the_receipt_callback_refuses_a_wrong_token_and_a_malformed_body(make_system) -> None:

    system: System = make_system().start(workers=0)
    base = f"{system.api_url}/callbacks"
    token = system.env["NOTIFYQ_CALLBACK_TOKEN"]
    assert (
        httpx.post(f"{base}/wrong/ihuyi/receipt", data={"code": "2", "voiceid": "1"}).status_code
        == 404
    )
    assert httpx.post(f"{base}/{token}/ihuyi/receipt", data={"code": "2"}).status_code == 400
    assert system.runtime.receipts.pending() == 0
    ok = httpx.post(
        f"{base}/{token}/ihuyi/receipt", data={"code": "2", "voiceid": "99", "talktime": "3"}
    )
    assert (ok.status_code, ok.text) == (200, "success")
    assert system.runtime.receipts.pending() == 1
