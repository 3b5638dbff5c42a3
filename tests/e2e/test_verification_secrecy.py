"""A verification code is never in a log, a response, a task's arguments, Flower, Redis
or the ledger: it appears only inside the provider's request.

One run with every part of the system — API, worker, beat, Flower, the CLI — at DEBUG:
an SMS code with a voice resend (the voice call placed after the resend delay, the code
spoken by ihuyi), a wrong check, the right one; a voice code created and checked from
the command line. Then everything a reader could see is gathered and searched for
either code. The sandbox's own ledger (the provider's side) is the positive control:
both codes did travel, in the providers' requests."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from store.schema import Event, Notification, Verification
from tests.conftest import TEST_CREDENTIALS, System
from tests.services import free_port, wait_until

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}
SMS_NUMBER, VOICE_NUMBER = "13800180001", "13800180002"


def placed(system: System, provider: str, number: str) -> list[dict[str, Any]]:
    return [c for c in system.ledger(provider) if c["number"] == number and c["placed"]]


def digits(call: dict[str, Any]) -> str:
    fields = call["fields"]
    if fields.get("params"):
        return str(fields["params"][0])
    return "".join(ch for ch in fields["content"] if ch.isdigit())


def redis_dump(url: str) -> str:
    """Every key of the system's Redis database and its value, as text."""
    client = redis.Redis.from_url(url)
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = client.smembers(key)
        else:
            value = kind
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


def ledger_dump(system: System) -> str:

    with system.runtime.db.read() as conn:
        rows = [
            repr(tuple(row))
            for model in (Notification, Event, Verification)
            for row in conn.execute(select(model.__table__))
        ]
    return "\n".join(rows)


def test_no_code_in_any_log_task_argument_answer_flower_redis_or_the_ledger(
    make_system,
) -> None:
    system: System = make_system(
        verify_secret="verify-secret-secrecy-2b7d",
        clock_control="true",
        log_level="DEBUG",
        task_log_level="DEBUG",
    )
    port = free_port()
    with system.stack.together():
        system.start(workers=1, concurrency=4, beat=True)
        # the API unauthenticated: the test's own Flower, on loopback
        system.stack.flower(port, extra_env={"FLOWER_UNAUTHENTICATED_API": "true"})
    seen: list[str] = []  # every answer a client got

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        answer = httpx.request(
            method, f"{system.api_url}{path}", headers=AUTH, timeout=30, **kwargs
        )
        seen.append(answer.text + json.dumps(dict(answer.headers)))
        return answer

    made = call(
        "POST",
        "/v1/verifications",
        json={"to": SMS_NUMBER, "channel": "sms", "length": 8, "voice_after": 10},
    )
    assert made.status_code == 202, made.text
    vid = made.json()["id"]
    sms = wait_until(lambda: placed(system, "apispace-sms", SMS_NUMBER), 30, what="the SMS")
    code = digits(sms[0])
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    assert (
        call("POST", f"/v1/verifications/{vid}/check", json={"code": wrong}).json()["status"]
        == "denied"
    )
    system.advance(11)  # unchecked after the resend delay: the voice call goes
    voice = wait_until(lambda: placed(system, "ihuyi", SMS_NUMBER), 30, what="the voice resend")
    assert digits(voice[0]) == code
    assert (
        call("POST", f"/v1/verifications/{vid}/check", json={"code": code}).json()["status"]
        == "approved"
    )
    call("GET", f"/v1/verifications/{vid}")

    cli_made = system.cli(
        "verify", "create", "--to", VOICE_NUMBER, "--channel", "voice", "--length", "8", "--json"
    )
    assert cli_made.returncode == 0, cli_made.stderr
    cli_id = json.loads(cli_made.stdout)["id"]
    spoken = wait_until(lambda: placed(system, "ihuyi", VOICE_NUMBER), 30, what="the voice code")
    cli_code = digits(spoken[0])
    cli_checked = system.cli("verify", "check", str(cli_id), "--code", cli_code, "--json")
    assert cli_checked.returncode == 0 and json.loads(cli_checked.stdout)["status"] == "approved"
    cli_shown = system.cli("verify", "show", str(cli_id))
    outputs = [p.stdout + p.stderr for p in (cli_made, cli_checked, cli_shown)]

    ids = [n.id for n in [system.runtime.notifications.get(i) for i in (1, 2, 3)] if n]
    system.wait_for(ids, {"sent", "delivered"}, timeout=30)

    def flower_tasks() -> str:
        return httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=10).text

    wait_until(
        lambda: all(f"[{i}]" in flower_tasks() for i in ids), 30, what="Flower to see each send"
    )
    codes = {code, cli_code}
    places = {
        "logs": system.stack.logs(),
        "flower": flower_tasks(),
        "answers": "\n".join(seen + outputs),
        "redis": redis_dump(system.env["NOTIFYQ_REDIS_URL"]),
        "ledger": ledger_dump(system),
    }
    assert "Task notifyq.dispatch" in places["logs"], "the workers' task lines were captured"
    for where, text in places.items():
        for secret in codes:
            assert secret not in text, f"a code in {where}"
