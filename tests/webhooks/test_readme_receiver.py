"""The receiver the README shows (section "Webhooks") works as written: it takes a
message notifyq signed, handles a retry of it once, and refuses a forged one."""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import pytest

from store.deliveries import Delivery
from tasks.webhook_http import signed_headers
from webhooks import new_secret

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

README = Path(__file__).resolve().parents[2] / "README.md"


def receiver_block() -> str:
    text = README.read_text()
    start = text.index("\n## Webhooks")
    section = text[start : text.index("\n## ", start + 1)]
    (block,) = re.findall(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    return block


def test_the_readmes_receiver_takes_a_signed_message_once_and_refuses_a_forged_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = new_secret()
    namespace: dict = {}
    exec(compile(receiver_block(), "README.md", "exec"), namespace)  # noqa: S102 - our README
    namespace["SECRET"] = secret
    body = {"type": "notification.delivered", "timestamp": "…", "data": {"id": 7, "version": 3}}
    raw = json.dumps(body).encode()
    delivery = Delivery(1, 1, "msg_readme", raw, 0, "https://orders.example/hooks", (secret,))
    headers = signed_headers(delivery, time.time())
    with TestClient(namespace["app"]) as client:
        for _ in range(2):  # the message, then a retry of it
            assert client.post("/hooks/notifyq", content=raw, headers=headers).status_code == 200
        forged = client.post("/hooks/notifyq", content=raw.replace(b"7", b"8"), headers=headers)
        assert forged.status_code == 400
    assert capsys.readouterr().out == "notification.delivered 7 3\n"
