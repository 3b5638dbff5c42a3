"""Verification codes and suppressions end to end: the HTTP API, real workers,
beat and Redis, the provider sandbox over real HTTP.

create → the code arrives at the sandbox → check approves (SMS, and voice via ihuyi);
wrong codes run out; a code past its time is expired; the per-number limits answer 429;
a suppressed number is never called — opted out, or learnt from the provider's own
"blacklisted" (ihuyi 4030) — and a campaign reports its suppressed rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from store import Status
from tasks.enqueue import enqueue
from tests.conftest import TEST_CREDENTIALS, System, system_per_backend
from tests.services import wait_until

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}
SECRET = "verify-secret-e2e-81c3"


system = system_per_backend(
    "verifications",
    14,
    verify_secret=SECRET,
    clock_control="true",
    sweep_interval="1",
)


@pytest.fixture(autouse=True)
def clean_sandbox(system: System) -> Iterator[None]:
    yield
    system.sandbox_config(refusals={})


def api(system: System, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{system.api_url}{path}", headers=AUTH, timeout=30, **kwargs)


def create(system: System, number: str, **body: Any) -> httpx.Response:
    return api(system, "POST", "/v1/verifications", json={"to": number, "channel": "sms", **body})


def check(system: System, verification_id: int, code: str) -> dict[str, Any]:
    answer = api(system, "POST", f"/v1/verifications/{verification_id}/check", json={"code": code})
    assert answer.status_code == 200, answer.text
    return answer.json()


def arrived(system: System, provider: str, number: str) -> list[dict[str, Any]]:
    """The calls the sandbox placed to this number (11 digits), oldest first."""
    return [c for c in system.ledger(provider) if c["number"] == number and c["placed"]]


def code_at_sandbox(system: System, provider: str, number: str) -> str:
    """The code as the person receives it: the SMS variable, or the digits ihuyi reads."""
    calls = wait_until(
        lambda: arrived(system, provider, number), 30, what=f"a {provider} call to the number"
    )
    fields = calls[-1]["fields"]
    if fields.get("params"):
        return str(fields["params"][0])
    return "".join(ch for ch in fields["content"] if ch.isdigit())


def notification(system: System, verification_id: int) -> Any:
    view = api(system, "GET", f"/v1/verifications/{verification_id}").json()
    return system.runtime.notifications.get(view["delivery"]["notification_id"])


def test_an_sms_code_arrives_and_its_check_approves(system: System) -> None:
    made = create(system, "13800170001", length=6)
    assert made.status_code == 202, made.text
    vid = made.json()["id"]
    code = code_at_sandbox(system, "apispace-sms", "13800170001")
    assert len(code) == 6 and code not in made.text
    assert check(system, vid, code) == {"id": vid, "status": "approved"}
    assert check(system, vid, code)["status"] == "expired", "an approved code is used up"
    row = notification(system, vid)
    assert Status(row.status) in (Status.SENT, Status.DELIVERED)
    assert row.params == () and row.content is None, "the send is final: its code is erased"


def test_a_voice_code_through_ihuyi_arrives_and_approves(system: System) -> None:
    made = create(system, "13800170002", channel="voice", length=4)
    assert made.status_code == 202 and made.json()["provider"] == "ihuyi"
    code = code_at_sandbox(system, "ihuyi", "13800170002")
    assert len(code) == 4
    assert check(system, made.json()["id"], code)["status"] == "approved"


def test_wrong_codes_run_out(system: System) -> None:
    vid = create(system, "13800170003").json()["id"]
    code = code_at_sandbox(system, "apispace-sms", "13800170003")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answers = [check(system, vid, wrong) for _ in range(5)]
    assert [a["status"] for a in answers] == ["denied"] * 4 + ["too_many_attempts"]
    assert [a.get("attempts_left") for a in answers[:4]] == [4, 3, 2, 1]
    assert check(system, vid, code)["status"] == "too_many_attempts"


def test_a_code_past_its_time_is_expired(system: System) -> None:
    vid = create(system, "13800170004", ttl=60).json()["id"]
    code = code_at_sandbox(system, "apispace-sms", "13800170004")
    system.advance(61)
    assert check(system, vid, code) == {"id": vid, "status": "expired", "reason": "expired"}


def test_the_per_number_limits(system: System) -> None:
    number = "13800170005"
    assert create(system, number).status_code == 202
    refused = create(system, number)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61
    system.advance(61)
    later = create(system, number)
    assert later.status_code == 202, "a minute on, the number may have its next code"
    wait_until(lambda: len(arrived(system, "apispace-sms", number)) == 2, 30, what="two codes")
    code = code_at_sandbox(system, "apispace-sms", number)
    assert check(system, later.json()["id"], code)["status"] == "approved"


def test_an_opted_out_number_is_never_called(system: System) -> None:
    number = "13800170006"
    added = api(system, "POST", "/v1/suppressions", json={"to": number})
    assert added.status_code == 201, added.text
    made = create(system, number)
    assert made.status_code == 202
    text = "您的快递已到，请查收。"
    plain = enqueue("ihuyi", number, content=text, runtime=system.runtime).id
    sms = notification(system, made.json()["id"]).id
    final = system.wait_for([sms, plain], {"failed"}, timeout=30)
    assert final == {sms: "failed", plain: "failed"}
    for nid in (sms, plain):
        row = system.runtime.notifications.get(nid)
        assert row.reason == "suppressed:opt-out" and row.attempts == 0
    assert system.runtime.notifications.get(sms).params == (), "its code erased with it"
    # both are final: nothing will ever dispatch them again, and nothing was placed
    assert not [c for c in system.ledger() if c["number"] == number]
    assert api(system, "DELETE", f"/v1/suppressions/{number}").status_code == 204
    again = enqueue("ihuyi", number, content=text, runtime=system.runtime).id
    system.wait_for([again], {"sent", "delivered"}, timeout=30)
    # the route's URL held the number: the API's access log shows it masked
    api_log = next(p for p in system.stack.procs if p.name == "api").text()
    assert "DELETE /v1/suppressions/138****0006" in api_log
    assert number not in api_log


def test_a_number_ihuyi_calls_blacklisted_is_suppressed_for_ihuyi(system: System) -> None:
    number = "13800170007"
    system.sandbox_config(refusals={"70007": "4030"})
    first = enqueue("ihuyi", number, content="您的快递已到。", runtime=system.runtime).id
    system.wait_for([first], {"failed"}, timeout=30)
    assert system.runtime.notifications.get(first).provider_code == "4030"
    listed = wait_until(
        lambda: api(system, "GET", "/v1/suppressions", params={"to": number}).json()[
            "suppressions"
        ],
        30,
        what="the learnt suppression",
    )
    assert listed == [
        {
            "to": "138****0007",
            "provider": "ihuyi",
            "reason": "blacklisted",
            "source": "ihuyi:4030",
            "created_at": listed[0]["created_at"],
        }
    ]
    system.sandbox_config(refusals={})  # the provider would take it now: we still do not call
    second = enqueue("ihuyi", number, content="您的快递已到。", runtime=system.runtime).id
    system.wait_for([second], {"failed"}, timeout=30)
    assert system.runtime.notifications.get(second).reason == "suppressed:blacklisted"
    assert len([c for c in system.ledger("ihuyi") if c["number"] == number]) == 1
    # suppressed for ihuyi only: a route moves on to jumdata, which calls
    routed = enqueue(
        "ihuyi",
        number,
        content="您的快递已到。",
        route=[{"provider": "jumdata", "template": "TPL-1", "params": ["9633"]}],
        runtime=system.runtime,
    ).id
    system.wait_for([routed], {"sent", "delivered"}, timeout=30)
    row = system.runtime.notifications.get(routed)
    assert row.provider == "jumdata"
    assert len(arrived(system, "jumdata", number)) == 1


def test_a_campaign_reports_its_suppressed_rows(system: System, tmp_path: Path) -> None:
    numbers = ["13800170011", "13800170012", "13800170013"]
    api(system, "POST", "/v1/suppressions", json={"to": numbers[1], "reason": "opt-out"})
    csv = tmp_path / "recipients.csv"
    csv.write_text("mobile\n" + "\n".join(numbers) + "\n", encoding="utf-8")
    made = system.cli(
        "campaign", "create", "--provider", "ihuyi", "--recipients", str(csv),
        "--content", "您的快递已到，请查收。", "--json",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    campaign_id = json.loads(made.stdout)["id"]

    def done() -> dict[str, Any] | None:
        shown = json.loads(system.cli("campaign", "show", str(campaign_id), "--json").stdout)
        return shown if shown["done"] == len(numbers) else None

    shown = wait_until(done, 60, what="the campaign's rows to end")
    assert shown["counts"].get("failed") == 1
    counted = system.cli("suppress", "campaign", str(campaign_id))
    assert counted.returncode == 0 and counted.stdout.strip() == "1"
    report = api(system, "GET", "/v1/suppressions", params={"campaign_id": campaign_id}).json()
    assert report == {"campaign_id": campaign_id, "suppressed": 1}
    assert not arrived(system, "ihuyi", numbers[1])


def test_the_command_line_adds_lists_and_lifts_suppressions(system: System) -> None:
    added = system.cli("suppress", "add", "+86 138 0017 0021", "--provider", "jumdata", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["to"] == "138****0021"
    listed = system.cli("suppress", "list", "--to", "13800170021", "--json")
    assert [s["provider"] for s in json.loads(listed.stdout)["suppressions"]] == ["jumdata"]
    assert "13800170021" not in listed.stdout
    bad = system.cli("suppress", "add", "12345")
    assert bad.returncode == 2 and "to:" in bad.stderr and "12345" not in bad.stderr
    assert system.cli("suppress", "remove", "13800170021").returncode == 0
    assert system.cli("suppress", "remove", "13800170021").returncode == 2
