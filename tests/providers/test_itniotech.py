"""itniotech: the signature, every documented status's outcome, per-callee partial
results, the signed JSON request, validation (numbers of any country, option ranges),
and the pushed call results (ASSUMED shape)."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from providers.base import Draft, Message, MissingCredentials, Outcome, Reply
from providers.itniotech import CODES, Itniotech, sign
from tests.providers.codes_doc import outcomes


def test_sign_is_md5_of_key_secret_and_seconds() -> None:
    # The seed's example (Api-Key bDqJFiq9, Timestamp 1630468800) with the secret its
    # code sample leaves as "your api secret"; digest by md5sum.
    assert sign("bDqJFiq9", "your api secret", 1630468800) == "531067bc4825260bbde68a5fa9b24188"


def client(app_id: str | None = "4luaKsL2") -> Itniotech:
    return Itniotech(SecretStr("bDqJFiq9"), SecretStr("s3cret"), app_id, "https://itnio.test/")


INDIA = Message(id=1, to="+919876543210", template="12022022570cc.mp3")
UK = Message(id=2, to="+447911123456", template="12022022570cc.mp3")
SINGAPORE = Message(id=3, to="+6591234567", template="12022022570cc.mp3")

#: the outcomes docs/codes.md states: the one table, read by the tests
EXPECTED = outcomes("itniotech")


def answer(status: str, data: list[dict[str, str]] | None = None, reason: str = "r") -> Reply:
    return Reply(200, json.dumps({"status": status, "reason": reason, "data": data or []}).encode())


def entry(callee: str, code: str = "0", voice_id: str = "v1") -> dict[str, str]:
    return {
        "voiceId": voice_id,
        "callee": callee,
        "terminationCode": code,
        "terminationReason": "r",
    }


def test_every_documented_status_is_in_the_table() -> None:
    assert set(CODES) == set(EXPECTED)


@pytest.mark.parametrize(("status", "outcome"), sorted(EXPECTED.items()))
def test_each_status_has_its_outcome_for_every_callee(status: str, outcome: Outcome) -> None:
    data = [entry("919876543210", voice_id="v1"), entry("447911123456", voice_id="v2")]
    results = client().send_results([INDIA, UK], answer(status, data if status == "0" else []))
    assert [(r.outcome, r.code) for r in results] == [(outcome, status), (outcome, status)]


def test_a_stale_timestamp_is_retried_since_the_retry_signs_afresh() -> None:
    (result,) = client().send_results([INDIA], answer("-16"))
    assert result.outcome is Outcome.TRANSIENT


def test_one_request_can_succeed_for_some_callees_and_fail_for_others() -> None:
    data = [
        entry("447911123456", "10001", voice_id=""),
        entry("919876543210", "0", voice_id="2203031134011000001"),
    ]
    results = client().send_results([INDIA, UK, SINGAPORE], answer("0", data))
    assert [(r.message_id, r.outcome, r.code, r.ref) for r in results] == [
        (1, Outcome.ACCEPTED, "0", "2203031134011000001"),
        (2, Outcome.PERMANENT, "10001", None),
        (3, Outcome.AMBIGUOUS, "0", None),  # not listed: the call may have been placed
    ]


def test_an_accepted_callee_without_a_voice_id_is_ambiguous() -> None:
    (result,) = client().send_results([INDIA], answer("0", [entry("919876543210", voice_id="")]))
    assert result.outcome is Outcome.AMBIGUOUS


def test_an_unknown_status_is_ambiguous_and_keeps_its_code() -> None:
    (result,) = client().send_results([INDIA], answer("-99"))
    assert (result.outcome, result.code) == (Outcome.AMBIGUOUS, "-99")


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"0","reason":"success","data":[{"voiceId":"22',
        b'{"status":"0","reason":"success"}',
        b'{"status":"0","data":["junk"]}',
    ],
)
def test_an_undocumented_answer_is_ambiguous(body: bytes) -> None:
    results = client().send_results([INDIA, UK], Reply(200, body))
    assert [r.outcome for r in results] == [Outcome.AMBIGUOUS, Outcome.AMBIGUOUS]


def test_the_request_is_signed_json_with_callees_in_digits() -> None:
    options = {"maxDuration": 50, "maxRingingTime": 60, "loopCount": 2, "displayNum": "1008122211"}
    messages = [
        Message(id=m.id, to=m.to, template=m.template, options=options) for m in (INDIA, UK)
    ]
    call = client().build_send(messages, 1630468800.9)
    assert (call.method, call.url) == ("POST", "https://itnio.test/voice/sendGroup")
    assert dict(call.headers) == {
        "Content-Type": "application/json;charset=UTF-8",
        "Api-Key": "bDqJFiq9",
        "Timestamp": "1630468800",
        "Sign": sign("bDqJFiq9", "s3cret", 1630468800),
    }
    assert call.json == {
        "callee": "919876543210,447911123456",
        "fileId": "12022022570cc.mp3",
        "appId": "4luaKsL2",
        **options,
    }
    assert client().max_batch == 1000


def test_without_the_app_id_nothing_is_built() -> None:
    with pytest.raises(MissingCredentials, match="NOTIFYQ_ITNIOTECH_APP_ID"):
        client(None).build_send([INDIA], 0)


@pytest.mark.parametrize(
    ("spelling", "e164"),
    [
        ("+91 98765 43210", "+919876543210"),
        ("919876543210", "+919876543210"),
        ("0091 9876543210", "+919876543210"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+1 415 555 0100", "+14155550100"),
    ],
)
def test_a_number_of_any_country_is_accepted_with_its_country_code(
    spelling: str, e164: str
) -> None:
    assert client().validate(Draft("itniotech", spelling, template="f.mp3")).to == e164


# -- pushed call results (the ASSUMED push) -------------------------------------------------


def result(status: object = "0", **more: object) -> dict[str, object]:
    return {
        "voiceId": "v1",
        "callee": "919876543210",
        "status": status,
        "reason": "answered",
        "duration": 12,
        "endTime": "2026-11-27 12:00:00",
        **more,
    }


def test_a_result_is_matched_by_the_voice_id_the_send_stored() -> None:
    sent = client().send_results([INDIA], answer("0", [entry("919876543210", voice_id="v1")]))
    (receipt,) = Itniotech.parse_receipts(result())
    assert receipt.ref == sent[0].ref == "v1"
    assert (receipt.delivered, receipt.code, receipt.message) == (True, "0", "answered")
    assert receipt.detail == {"duration": 12, "endTime": "2026-11-27 12:00:00"}


@pytest.mark.parametrize(
    ("status", "delivered"), [("0", True), (0, True), ("1", False), ("-3", False)]
)
def test_only_status_0_is_answered(status: object, delivered: bool) -> None:
    (receipt,) = Itniotech.parse_receipts(result(status, duration=0))
    assert (receipt.delivered, receipt.code) == (delivered, str(status))


def test_an_array_of_results_gives_one_receipt_each() -> None:
    receipts = Itniotech.parse_receipts([result(), result("2", voiceId="v2", duration="0")])
    assert [(r.ref, r.delivered) for r in receipts] == [("v1", True), ("v2", False)]


def test_a_missing_duration_is_no_talk_time() -> None:
    body = {k: v for k, v in result("1").items() if k not in ("duration", "reason", "endTime")}
    (receipt,) = Itniotech.parse_receipts(body)
    assert receipt.detail == {"duration": 0, "endTime": ""}


@pytest.mark.parametrize(
    "body",
    [
        [],
        None,
        "0",
        [result(), 7],  # one bad entry refuses the whole push
        {"callee": "919876543210", "status": "0"},
        result(voiceId=""),
        result(voiceId=None),
        result(status=""),
        result(duration="919876543210x"),
        result(duration=-1),
        result(duration=1.5),
        result(duration=True),
    ],
)
def test_a_push_that_is_not_call_results_raises_without_echoing_a_number(body: object) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)) as caught:
        Itniotech.parse_receipts(body)
    assert "919876543210" not in str(caught.value)


# -- the seed's own example callees ----------------------------------------------------------------


@pytest.mark.parametrize("callee", ["91856321412", "91856321300", "+91856321412"])
def test_the_seeds_own_example_callees_are_accepted(callee: str) -> None:
    valid = client().validate(Draft("itniotech", callee, template="f.mp3"))
    assert valid.to == "+" + callee.lstrip("+")
    built = client().build_send([Message(id=1, to=valid.to, template="f.mp3")], 1630468800)
    assert built.json["callee"] == callee.lstrip("+")


def test_a_system_error_after_the_request_left_is_ambiguous() -> None:
    results = client().send_results([INDIA, UK], answer("-18"))
    assert {(r.outcome, r.splits) for r in results} == {(Outcome.AMBIGUOUS, False)}


def test_a_parameter_error_asks_for_the_group_to_be_split() -> None:
    results = client().send_results([INDIA, UK], answer("-22"))
    assert {(r.outcome, r.splits) for r in results} == {(Outcome.PERMANENT, True)}
