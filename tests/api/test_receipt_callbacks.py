"""The assumed receipt pushes of APISpace SMS and itniotech, against the real API process:
the token hides them (404), a malformed or oversized push is refused (400/413) with
nothing stored, a good push moves ``sent`` to its final status and says ``success``,
and the repeats a provider sends when it missed our answer change nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from providers.apispace import sms_ref
from store import Change, Expect, NewNotification, Status
from store.schema import Receipt
from tests.conftest import System, own_system

SMS_TEXT = "【Eolink】您的验证码是{$var}，5分钟内有效。"


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One API (and sandbox) for the module: the tests only push to it."""
    with own_system(tmp_path_factory.mktemp("receipt-callbacks")) as system:
        yield system.start(workers=0)


@pytest.fixture
def system(started: System) -> System:
    """The module's system with an empty store and Redis: every test counts what was
    stored from zero, and reuses references ("77001") another test also pushed."""
    started.empty()
    return started


def url(system: System, route: str, token: str | None = None) -> str:
    return f"{system.api_url}/callbacks/{token or system.env['NOTIFYQ_CALLBACK_TOKEN']}/{route}"


def sent(system: System, provider: str, to: str, ref: str) -> int:
    """A notification already ``sent`` with this provider reference, as a worker leaves it."""
    store = system.runtime.notifications
    extra: dict[str, Any] = {
        "apispace-sms": {"content": SMS_TEXT, "params": ["4821"]},
        "ihuyi": {"content": "您的快递已到。"},
    }.get(provider, {"template": "f.mp3"})
    (row,) = store.insert([NewNotification(provider=provider, to=to, **extra)])
    store.transition(
        [Change(row.id, Status.SENDING, expect=Expect.row(store.get(row.id)), count_attempt=True)]
    )
    store.transition(
        [
            Change(
                row.id,
                Status.SENT,
                expect=Expect.row(store.get(row.id)),
                values={"provider_ref": ref},
            )
        ]
    )
    return row.id


def stored(system: System) -> int:
    with system.runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Receipt)).scalar_one()


def snapshot(system: System, ids: list[int]) -> list[Any]:
    store = system.runtime.notifications
    return [
        (
            store.get(i).status,
            store.get(i).reason,
            [(e.from_status, e.to_status) for e in store.events(i)],
        )
        for i in ids
    ]


def sms_report(mobile: str, status: str, msg_id: str = "SMS42") -> dict[str, str]:
    return {
        "msgId": msg_id,
        "mobile": mobile,
        "status": status,
        "desc": "d",
        "reportTime": "2026-11-27 12:00:00",
    }


def call_result(voice_id: str, status: str) -> dict[str, Any]:
    return {
        "voiceId": voice_id,
        "callee": "919876543210",
        "status": status,
        "reason": "r",
        "duration": 12 if status == "0" else 0,
        "endTime": "2026-11-27 12:00:00",
    }


GOOD = {
    "apispace-sms": [sms_report("15800001234", "DELIVRD")],
    "itniotech": call_result("77001", "0"),
}


ROUTES = ("apispace-sms", "itniotech")


def test_a_wrong_token_is_not_found_and_stores_nothing(system: System) -> None:
    for route in ROUTES:
        answer = httpx.post(url(system, route, token="wrong-token"), json=GOOD[route])
        assert answer.status_code == 404, route
        assert "success" not in answer.text
    assert stored(system) == 0


MALFORMED: list[tuple[str, bytes, str]] = [
    ("not JSON", b"{not json", "application/json"),
    ("a string", b'"DELIVRD"', "application/json"),
    ("a number", b"7", "application/json"),
    ("an empty array", b"[]", "application/json"),
    ("an array of junk", b'["a", 1]', "application/json"),
    ("not UTF-8", b'{"msgId": "\xff"}', "application/json"),
    ("an empty form", b"", "application/x-www-form-urlencoded"),
]


def test_a_body_that_is_not_a_push_is_400_and_stores_nothing(system: System) -> None:
    for route in ROUTES:
        for what, body, kind in MALFORMED:
            answer = httpx.post(url(system, route), content=body, headers={"content-type": kind})
            assert answer.status_code == 400, f"{route}: {what}"
    assert stored(system) == 0


BAD_ENTRIES: list[tuple[str, Any]] = [
    ("apispace-sms", [sms_report("15800001234", "DELIVRD"), {"msgId": "SMS42"}]),
    ("apispace-sms", sms_report("+447911123456", "DELIVRD")),
    ("apispace-sms", {**sms_report("15800001234", "DELIVRD"), "status": ""}),
    ("itniotech", [call_result("77001", "0"), {"status": "0"}]),
    ("itniotech", {**call_result("77001", "0"), "duration": "twelve"}),
    ("itniotech", {**call_result("77001", "0"), "voiceId": None}),
]


def test_one_bad_report_refuses_the_whole_push_and_leaves_the_row_sent(system: System) -> None:
    sms = sent(system, "apispace-sms", "+8615800001234", sms_ref("SMS42", "15800001234"))
    call = sent(system, "itniotech", "+919876543210", "77001")
    for route, push in BAD_ENTRIES:
        answer = httpx.post(url(system, route), json=push)
        assert answer.status_code == 400, push
        assert "15800001234" not in answer.text and "7911123456" not in answer.text
    assert stored(system) == 0
    assert (system.status(sms), system.status(call)) == ("sent", "sent")


def test_an_oversized_push_is_413_and_stores_nothing(system: System) -> None:
    limit = system.settings.callback_max_bytes
    for route in ROUTES:
        one = GOOD[route][0] if route == "apispace-sms" else GOOD[route]
        body = json.dumps([one] * (limit // len(json.dumps(one)) + 10)).encode()
        assert len(body) > limit
        answer = httpx.post(
            url(system, route), content=body, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 413, route
    assert stored(system) == 0


def test_sms_reports_of_one_msgid_reach_each_number_and_repeats_change_nothing(
    system: System,
) -> None:
    delivered = sent(system, "apispace-sms", "+8615800001234", sms_ref("SMS42", "15800001234"))
    expired = sent(system, "apispace-sms", "+8613800005678", sms_ref("SMS42", "13800005678"))
    push = [sms_report("15800001234", "DELIVRD"), sms_report("8613800005678", "EXPIRED")]

    first = httpx.post(url(system, "apispace-sms"), json=push)
    assert (first.status_code, first.text) == (200, "success")
    after_first = snapshot(system, [delivered, expired])
    assert [(s, r) for s, r, _ in after_first] == [
        (Status.DELIVERED, None),
        (Status.UNDELIVERED, "receipt:EXPIRED"),
    ]
    for _ in range(2):  # the provider repeats a push it thinks failed, up to 3 times
        again = httpx.post(url(system, "apispace-sms"), json=push)
        assert (again.status_code, again.text) == (200, "success")
    assert snapshot(system, [delivered, expired]) == after_first
    assert stored(system) == 2


def test_an_itniotech_result_moves_its_call_and_repeats_change_nothing(system: System) -> None:
    answered = sent(system, "itniotech", "+919876543210", "77001")
    missed = sent(system, "itniotech", "+447911123456", "77002")

    one = httpx.post(url(system, "itniotech"), json=call_result("77001", "0"))
    assert (one.status_code, one.text) == (200, "success")
    both = httpx.post(
        url(system, "itniotech"), json=[call_result("77001", "0"), call_result("77002", "1")]
    )
    assert (both.status_code, both.text) == (200, "success")
    after = snapshot(system, [answered, missed])
    assert [(s, r) for s, r, _ in after] == [
        (Status.DELIVERED, None),
        (Status.UNDELIVERED, "receipt:1"),
    ]
    for _ in range(3):
        again = httpx.post(url(system, "itniotech"), json=call_result("77002", "1"))
        assert (again.status_code, again.text) == (200, "success")
    assert snapshot(system, [answered, missed]) == after
    assert stored(system) == 2


def test_the_other_callbacks_still_take_objects_only(system: System) -> None:
    receipt = {"voiceid": "9", "code": "2", "talktime": "3"}
    assert httpx.post(url(system, "ihuyi/receipt"), json=[receipt]).status_code == 400
    jumdata = {"callId": "9", "callStatus": "0"}
    assert httpx.post(url(system, "jumdata"), json=[jumdata]).status_code == 400
    assert stored(system) == 0


# -- a receipt with a code no document lists is kept, never refused --------------------------------


@pytest.mark.parametrize("code", ["-7", "-99"])
def test_an_ihuyi_receipt_with_an_undocumented_code_is_stored_undelivered_and_answered(
    system: System, code: str
) -> None:
    row = sent(system, "ihuyi", "+8613800138000", "60495654")
    form = {
        "code": code,
        "msg": "?",
        "mobilephone": "13800138000",
        "talktime": "0",
        "voiceid": "60495654",
        "report_time": "2026-12-02 09:00:00",
    }
    for _ in range(2):  # a repeat changes nothing
        reply = httpx.post(url(system, "ihuyi/receipt"), data=form)
        assert (reply.status_code, reply.text) == (200, "success")
    status, reason, _ = snapshot(system, [row])[0]
    assert (status, reason) == (Status.UNDELIVERED, f"receipt:{code}")
    assert stored(system) == 1


@pytest.mark.parametrize("status", ["2", "busy"])
def test_a_jumdata_result_with_an_undocumented_status_is_stored_with_its_raw_value(
    system: System, status: str
) -> None:
    row = sent(system, "jumdata", "+8613800138000", "12121212121212")
    form = {"callId": "12121212121212", "callStatus": status, "callTime": "0", "notifyData": "1"}
    reply = httpx.post(url(system, "jumdata"), data=form)
    assert (reply.status_code, reply.text) == (200, "success")
    assert snapshot(system, [row])[0][:2] == (Status.UNDELIVERED, f"receipt:{status}")
    with system.runtime.db.read() as conn:
        (code,) = conn.execute(select(Receipt.code)).one()
    assert code == status


# -- pushes that arrive together are stored together, each row moved once -------------------------


def ihuyi_receipt(voiceid: str, code: str) -> dict[str, str]:
    return {
        "code": code,
        "msg": "成功" if code == "2" else "?",
        "mobilephone": "13800138000",
        "talktime": "12" if code == "2" else "0",
        "voiceid": voiceid,
        "report_time": "2026-12-02 09:00:00",
    }


def test_pushes_arriving_at_once_each_move_their_row_once_and_a_bad_one_is_refused_alone(
    system: System,
) -> None:
    """Every receipt pushed three times at the same moment, with malformed pushes among
    them: the pushes share transactions (api/callbacks.py ``receipt_writer``), and still
    every good push hears ``success``, every bad one 400, and every row moves once."""
    refs = [f"8800{i:03d}" for i in range(30)]
    rows = [sent(system, "ihuyi", f"+86138{i:08d}", ref) for i, ref in enumerate(refs)]
    codes = ["2" if i % 3 else "-6" for i in range(len(refs))]
    pushes = [ihuyi_receipt(ref, code) for ref, code in zip(refs, codes, strict=True)] * 3
    pushes += [{"code": "2"}, {"voiceid": "", "code": "2"}]  # no reference: malformed

    async def push_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
            return await asyncio.gather(
                *(client.post(url(system, "ihuyi/receipt"), data=form) for form in pushes)
            )

    answers = asyncio.run(push_all())
    assert [(a.status_code, a.text) for a in answers[:-2]] == [(200, "success")] * (3 * len(refs))
    assert [a.status_code for a in answers[-2:]] == [400, 400]
    assert stored(system) == len(refs)
    for row, code, (status, reason, events) in zip(
        rows, codes, snapshot(system, rows), strict=True
    ):
        assert (status, reason) == (
            (Status.DELIVERED, None) if code == "2" else (Status.UNDELIVERED, "receipt:-6")
        ), row
        assert [e for e in events if e[0] == Status.SENT] == [(Status.SENT, status)], row
