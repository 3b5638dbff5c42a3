"""``/v1/verifications`` and ``/v1/suppressions`` in process, over a real store and a real
Redis (no workers: what the code's notification holds is read from the ledger before any
send, as only a test may): create → check approves once; wrong codes run out; a code
past its time is expired; the per-number limits answer 429 with Retry-After; a new code
cancels the old one; bad input is 422 naming the field with nothing stored; no secret,
no verifications. Suppressions are added, listed masked and lifted."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from api.app import create_app
from providers.ihuyi import Ihuyi
from store import Change, Expect, Status
from store.schema import Notification, Suppression, Verification
from tasks import suppressions
from tasks.enqueue import enqueue
from tasks.runtime import Runtime
from tasks.verifications import expire_due
from tests.conftest import TEST_CREDENTIALS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}
NUMBER = "13800138000"
SECRET = "verify-secret-test-5e1f"


def verifying(**extra: Any) -> dict[str, Any]:
    """The settings of these tests' runtimes: a verification secret, the clock movable."""
    return {"verify_secret": SECRET, "clock_control": "true", **extra}


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime(**verifying())


def code_of(runtime: Runtime, verification_id: int) -> str:
    """The code as the provider will receive it: the (still unsent) notification's param
    or, for ihuyi, the digits in its text."""
    with runtime.db.read() as conn:
        vrow = conn.execute(select(Verification).where(Verification.id == verification_id)).one()
        nrow = conn.execute(
            select(Notification.__table__).where(Notification.id == vrow.notification_id)
        ).one()
    assert nrow.secret
    if nrow.params:
        return str(nrow.params[0])
    return "".join(ch for ch in nrow.content if ch.isdigit())


def count(runtime: Runtime, table: Any) -> int:
    with runtime.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def create(api_client: TestClient, **body: Any) -> Any:
    return api_client.post(
        "/v1/verifications", json={"to": NUMBER, "channel": "sms", **body}, headers=AUTH
    )


def test_create_then_check_approves_once(api_client: TestClient, runtime: Runtime) -> None:
    made = create(api_client, length=8)
    assert made.status_code == 202, made.text
    body = made.json()
    assert set(body) == {"id", "status", "channel", "provider", "expires_at"}
    assert body["status"] == "pending" and body["provider"] == "apispace-sms"
    code = code_of(runtime, body["id"])
    assert len(code) == 8 and code not in made.text
    with runtime.db.read() as conn:
        stored = conn.execute(select(Verification.__table__)).one()
    assert code not in repr(tuple(stored)), "only the code's HMAC is stored"
    check = api_client.post(
        f"/v1/verifications/{body['id']}/check", json={"code": code}, headers=AUTH
    )
    assert check.status_code == 200 and check.json() == {"id": body["id"], "status": "approved"}
    again = api_client.post(
        f"/v1/verifications/{body['id']}/check", json={"code": code}, headers=AUTH
    )
    assert again.json()["status"] == "expired" and again.json()["reason"] == "used"
    shown = api_client.get(f"/v1/verifications/{body['id']}", headers=AUTH).json()
    assert shown["status"] == "approved" and shown["to"] == "138****8000"
    metrics = api_client.get("/metrics", headers=AUTH).text
    assert 'notifyq_verifications_total{channel="sms"}' in metrics
    assert 'notifyq_verification_checks_total{result="approved"}' in metrics


def test_wrong_codes_run_out(api_client: TestClient, runtime: Runtime) -> None:
    vid = create(api_client).json()["id"]
    code = code_of(runtime, vid)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    left = []
    for _ in range(runtime.settings.verify_max_attempts - 1):
        answer = api_client.post(
            f"/v1/verifications/{vid}/check", json={"code": wrong}, headers=AUTH
        )
        assert answer.json()["status"] == "denied"
        left.append(answer.json()["attempts_left"])
    assert left == list(range(runtime.settings.verify_max_attempts - 1, 0, -1))
    last = api_client.post(f"/v1/verifications/{vid}/check", json={"code": wrong}, headers=AUTH)
    assert last.json()["status"] == "too_many_attempts"
    # even the right code now: the verification is over, and its unsent code is cancelled
    right = api_client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=AUTH)
    assert right.json()["status"] == "too_many_attempts"
    with runtime.db.read() as conn:
        sent = conn.execute(select(Notification.__table__)).one()
    assert Status(sent.status) is Status.CANCELLED and sent.params == [] and sent.content is None


def test_a_code_past_its_time_is_expired(api_client: TestClient, runtime: Runtime) -> None:
    vid = create(api_client, ttl=60).json()["id"]
    code = code_of(runtime, vid)
    runtime.clock.advance(61)
    answer = api_client.post(f"/v1/verifications/{vid}/check", json={"code": code}, headers=AUTH)
    assert answer.json() == {"id": vid, "status": "expired", "reason": "expired"}


def test_per_number_limits_answer_429_with_retry_after(
    api_client: TestClient, runtime: Runtime
) -> None:
    assert create(api_client).status_code == 202
    refused = create(api_client)
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 61
    assert count(runtime, Verification) == 1
    for _ in range(4):  # one a minute: five in the hour
        runtime.clock.advance(61)
        assert create(api_client).status_code == 202
    runtime.clock.advance(61)
    sixth = create(api_client)
    assert sixth.status_code == 429 and int(sixth.headers["Retry-After"]) > 60 * 50
    # another number is not held back by this one
    other = api_client.post(
        "/v1/verifications", json={"to": "13900139000", "channel": "sms"}, headers=AUTH
    )
    assert other.status_code == 202


def test_a_new_code_cancels_the_old_one(api_client: TestClient, runtime: Runtime) -> None:
    first = create(api_client).json()["id"]
    old_code = code_of(runtime, first)
    runtime.clock.advance(61)
    second = create(api_client).json()["id"]
    answer = api_client.post(
        f"/v1/verifications/{first}/check", json={"code": old_code}, headers=AUTH
    )
    assert answer.json() == {"id": first, "status": "expired", "reason": "superseded"}
    with runtime.db.read() as conn:
        rows = conn.execute(select(Notification.__table__).order_by(Notification.id)).all()
    assert Status(rows[0].status) is Status.CANCELLED and rows[0].params == []
    assert Status(rows[1].status) is Status.QUEUED
    new = api_client.post(
        f"/v1/verifications/{second}/check", json={"code": code_of(runtime, second)}, headers=AUTH
    )
    assert new.json()["status"] == "approved"
    # another purpose is its own verification: it cancels nothing
    runtime.clock.advance(61)
    create(api_client, purpose="login")
    assert (
        api_client.get(f"/v1/verifications/{second}", headers=AUTH).json()["status"] == "approved"
    )


def test_voice_puts_the_code_in_ihuyi_text_and_sms_may_fall_back_to_voice(
    api_client: TestClient, runtime: Runtime
) -> None:
    made = api_client.post(
        "/v1/verifications",
        json={"to": NUMBER, "channel": "voice", "template": "您的验证码是{code}，请勿外传。"},
        headers=AUTH,
    )
    assert made.status_code == 202 and made.json()["provider"] == "ihuyi"
    code = code_of(runtime, made.json()["id"])
    with runtime.db.read() as conn:
        row = conn.execute(select(Notification.__table__)).one()
    assert row.provider == "ihuyi" and row.content == f"您的验证码是{code}，请勿外传。"
    runtime.clock.advance(61)
    later = create(api_client, voice_after=30).json()
    with runtime.db.read() as conn:
        sms, voice = conn.execute(
            select(Notification.__table__).where(Notification.id > row.id).order_by(Notification.id)
        ).all()
    assert sms.provider == "apispace-sms" and voice.provider == "ihuyi"
    assert Status(voice.status) is Status.DEFERRED
    assert voice.next_attempt_at == pytest.approx(sms.created_at + 30, abs=1)
    approve = api_client.post(
        f"/v1/verifications/{later['id']}/check",
        json={"code": code_of(runtime, later["id"])},
        headers=AUTH,
    )
    assert approve.json()["status"] == "approved"
    with runtime.db.read() as conn:
        voice = conn.execute(
            select(Notification.__table__).where(Notification.id == voice.id)
        ).one()
    assert Status(voice.status) is Status.CANCELLED, "approved: the voice call is not needed"
    assert voice.content is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "12345", "channel": "sms"}, "to"),
        ({"to": NUMBER, "channel": "fax"}, "channel"),
        ({"to": NUMBER, "channel": "sms", "length": 3}, "length"),
        ({"to": NUMBER, "channel": "sms", "length": 9}, "length"),
        ({"to": NUMBER, "channel": "sms", "ttl": 5}, "ttl"),
        ({"to": NUMBER, "channel": "sms", "provider": "ihuyi"}, "provider"),
        ({"to": NUMBER, "channel": "sms", "template": "no signature {$var}"}, "template"),
        ({"to": NUMBER, "channel": "voice", "template": "没有验证码"}, "template"),
        ({"to": NUMBER, "channel": "voice", "provider": "jumdata"}, "template"),
        ({"to": NUMBER, "channel": "voice", "voice_after": 30}, "voice_after"),
        ({"to": NUMBER, "channel": "sms", "purpose": "a b"}, "purpose"),
        ({"to": NUMBER, "channel": "sms", "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    api_client: TestClient, runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    answer = api_client.post("/v1/verifications", json=body, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]], answer.json()
    assert count(runtime, Verification) == 0 and count(runtime, Notification) == 0
    # and the refused request took none of the number's codes
    assert create(api_client).status_code == 202


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"template": "没有验证码"}, "must hold {code} for the code"),
        (
            {"provider": "jumdata"},
            "jumdata needs a template id (NOTIFYQ_VERIFY_JUMDATA_TEMPLATE)",
        ),
    ],
)
def test_a_voice_code_the_provider_cannot_carry_says_why(
    api_client: TestClient, body: dict[str, Any], message: str
) -> None:
    answer = create(api_client, channel="voice", **body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"] == [{"field": "template", "message": message}]


def test_a_check_of_a_code_that_is_not_digits_is_422_and_not_counted(
    api_client: TestClient, runtime: Runtime
) -> None:
    vid = create(api_client).json()["id"]
    for code in ("12ab56", "1", "123456789", ""):
        answer = api_client.post(
            f"/v1/verifications/{vid}/check", json={"code": code}, headers=AUTH
        )
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "code"
    assert api_client.get(f"/v1/verifications/{vid}", headers=AUTH).json()["attempts"] == 0
    missing = api_client.post("/v1/verifications/999/check", json={"code": "123456"}, headers=AUTH)
    assert missing.status_code == 404


def test_without_a_secret_no_verification_is_created(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(**verifying(verify_secret=""))
    with TestClient(create_app(rt.settings, rt)) as api_client:
        answer = create(api_client)
        assert answer.status_code == 503
        assert "NOTIFYQ_VERIFY_SECRET" in answer.json()["errors"][0]["message"]
        assert count(rt, Notification) == 0


def test_suppressions_are_added_listed_masked_and_lifted(
    api_client: TestClient, runtime: Runtime
) -> None:
    added = api_client.post("/v1/suppressions", json={"to": "+86 138 0013 8000"}, headers=AUTH)
    assert added.status_code == 201, added.text
    assert added.json()["to"] == "138****8000" and added.json()["provider"] is None
    assert added.json()["reason"] == "opt-out"
    again = api_client.post("/v1/suppressions", json={"to": NUMBER}, headers=AUTH)
    assert again.status_code == 200
    ihuyi = api_client.post(
        "/v1/suppressions",
        json={"to": "13900139000", "provider": "ihuyi", "reason": "blacklisted"},
        headers=AUTH,
    )
    assert ihuyi.status_code == 201
    listed = api_client.get("/v1/suppressions", headers=AUTH).json()
    assert [s["to"] for s in listed["suppressions"]] == ["138****8000", "139****9000"]
    assert "13800138000" not in str(listed)
    one = api_client.get("/v1/suppressions", params={"to": "8613900139000"}, headers=AUTH).json()
    assert [s["provider"] for s in one["suppressions"]] == ["ihuyi"]
    page = api_client.get("/v1/suppressions", params={"limit": 1}, headers=AUTH).json()
    assert len(page["suppressions"]) == 1 and page["next"] is not None
    assert api_client.delete(f"/v1/suppressions/{NUMBER}", headers=AUTH).status_code == 204
    assert api_client.delete(f"/v1/suppressions/{NUMBER}", headers=AUTH).status_code == 404
    assert count(runtime, Suppression) == 1
    for bad, field in (
        ({"to": "12"}, "to"),
        ({"to": NUMBER, "provider": "acme"}, "provider"),
        ({"to": NUMBER, "reason": "two words"}, "reason"),
    ):
        refused = api_client.post("/v1/suppressions", json=bad, headers=AUTH)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field
    assert api_client.delete("/v1/suppressions/12", headers=AUTH).status_code == 422
    assert count(runtime, Suppression) == 1


def test_codes_nobody_checked_expire_and_their_unsent_notifications_end(
    api_client: TestClient, runtime: Runtime
) -> None:

    vid = create(api_client, ttl=60).json()["id"]
    assert expire_due(runtime) == 0
    runtime.clock.advance(61)
    assert expire_due(runtime) == 1
    assert api_client.get(f"/v1/verifications/{vid}", headers=AUTH).json()["status"] == "expired"
    with runtime.db.read() as conn:
        row = conn.execute(select(Notification.__table__)).one()
    assert Status(row.status) is Status.CANCELLED and row.params == [] and row.content is None


@pytest.mark.parametrize(("scope", "provider"), [("provider", "ihuyi"), ("all", "*")])
def test_a_bad_number_is_learnt_for_its_provider_or_for_all(
    make_runtime: Callable[..., Runtime], scope: str, provider: str
) -> None:

    rt = make_runtime(**verifying(suppress_scope=scope))
    bad = [("ihuyi", "+8613800138000", "blacklisted", "4030")]
    assert suppressions.learn(rt, bad) == 1
    assert suppressions.learn(rt, bad) == 0, "learnt once"
    (view,) = suppressions.lookup(rt, NUMBER)
    assert (view.provider, view.reason, view.source) == (provider, "blacklisted", "ihuyi:4030")
    hits = suppressions.hits(rt, [("ihuyi", "+8613800138000"), ("jumdata", "+8613800138000")])
    assert set(hits) == (
        {("ihuyi", "+8613800138000")}
        if scope == "provider"
        else {("ihuyi", "+8613800138000"), ("jumdata", "+8613800138000")}
    )


def test_a_receipt_that_says_vacant_suppresses_the_number_for_its_provider(
    runtime: Runtime,
) -> None:

    sent = enqueue("ihuyi", NUMBER, content="您好。", runtime=runtime)
    row = runtime.notifications.get(sent.id)
    runtime.notifications.transition(
        [Change(sent.id, Status.SENDING, expect=Expect.row(row), count_attempt=True)]
    )
    runtime.notifications.transition(
        [
            Change(
                sent.id,
                Status.SENT,
                expect=Expect.sending(row.version + 1),
                values={"provider_ref": "V-77"},
            )
        ]
    )
    vacant = Ihuyi.parse_receipt({"voiceid": "V-77", "code": "-5", "mobilephone": NUMBER})
    answered = Ihuyi.parse_receipt({"voiceid": "V-78", "code": "2"})
    assert (vacant.bad_number, answered.bad_number) == ("vacant", None)
    unknown_ref = Ihuyi.parse_receipt({"voiceid": "V-79", "code": "-5"})
    assert suppressions.learn_receipts(runtime, "ihuyi", [vacant, answered, unknown_ref]) == 1
    (view,) = suppressions.lookup(runtime, NUMBER)
    assert (view.provider, view.reason, view.source) == ("ihuyi", "vacant", "ihuyi:-5")


def test_a_voice_resend_the_settings_cannot_send_is_refused_naming_voice_after(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(**verifying(verify_voice_provider="jumdata"))
    with TestClient(create_app(rt.settings, rt)) as api_client:
        answer = create(api_client, voice_after=30)
        assert answer.status_code == 422
        assert [e["field"] for e in answer.json()["errors"]] == ["voice_after"]
        assert count(rt, Notification) == 0
