"""APISpace voice and SMS: every documented code's outcome, single and batch requests,
per-number batch answers, SMS billing, the seed's signature and template rules, the
report pull, and validation at the door."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from providers.apispace import (
    BATCH_PATH,
    CODES,
    SMS_PATH,
    VOICE_PATH,
    ApispaceSms,
    ApispaceVoice,
    cost,
    segments,
    sms_ref,
)
from providers.base import (
    Draft,
    InvalidRequest,
    Message,
    MissingCredentials,
    Outcome,
    Reply,
    UnreadableReply,
)
from tests.providers.codes_doc import outcomes
from tests.providers.refusals import refused

TOKEN = "apispace-test-token"
HEADERS = {"X-APISpace-Token": TOKEN, "Authorization-Type": "apikey"}
SEED_MSG = "【Eolinker】您的验证码是：{$var}，5分钟内有效。如非本人操作，请忽略。"


def voice() -> ApispaceVoice:
    return ApispaceVoice(SecretStr(TOKEN), "http://eolink.test/", "http://cb.test/")


def sms() -> ApispaceSms:
    return ApispaceSms(SecretStr(TOKEN), "http://eolink.test")


def call_to(n: int, number: str, **kw: object) -> Message:
    return Message(id=n, to=number, template="1011340330258440200", params=("张三",), **kw)  # type: ignore[arg-type]


ONE = [call_to(1, "+8613800138000")]
THREE = [call_to(1, "+8613800138000"), call_to(2, "+8613900139000"), call_to(3, "+862151234529")]
CODE_1 = [Message(id=1, to="+8613800138000", content=SEED_MSG, params=("1234",))]

#: the outcomes docs/codes.md states: the one table, read by the tests
EXPECTED = outcomes("apispace-voice")


def answer(**fields: object) -> Reply:
    return Reply(200, json.dumps(fields, ensure_ascii=False).encode())


def test_every_documented_code_is_in_the_table() -> None:
    assert set(CODES) == set(EXPECTED)


@pytest.mark.parametrize(("code", "outcome"), sorted(EXPECTED.items()))
def test_a_voice_send_has_its_codes_outcome(code: str, outcome: Outcome) -> None:
    (result,) = voice().send_results(ONE, answer(code=code, desc="d", callId="YYTZ1"))
    assert (result.outcome, result.code) == (outcome, code)
    assert result.ref == ("YYTZ1" if code == "000" else None)


@pytest.mark.parametrize(("code", "outcome"), sorted(EXPECTED.items())[1:])
def test_a_refused_batch_gives_every_number_the_codes_outcome(code: str, outcome: Outcome) -> None:
    results = voice().send_results(THREE, answer(code=code, desc="d"))
    assert [(r.message_id, r.outcome) for r in results] == [
        (1, outcome),
        (2, outcome),
        (3, outcome),
    ]


@pytest.mark.parametrize(("code", "outcome"), sorted(EXPECTED.items()))
def test_an_sms_send_has_its_codes_outcome(code: str, outcome: Outcome) -> None:
    (result,) = sms().send_results(CODE_1, answer(code=code, desc="d", data={"msgId": "SMS9"}))
    assert (result.outcome, result.code) == (outcome, code)
    assert result.ref == (sms_ref("SMS9", "13800138000") if code == "000" else None)


def test_an_unknown_code_is_ambiguous_and_keeps_its_code() -> None:
    (result,) = voice().send_results(ONE, answer(code="777", desc="new"))
    assert (result.outcome, result.code) == (Outcome.AMBIGUOUS, "777")


@pytest.mark.parametrize(
    "body",
    [
        b'{"code":"000","desc":"\xe6\x88',
        b'{"code":"000","desc":"ok"}',  # accepted, no callId
        b'["000"]',
    ],
)
def test_an_undocumented_voice_answer_is_ambiguous(body: bytes) -> None:
    (result,) = voice().send_results(ONE, Reply(200, body))
    assert result.outcome is Outcome.AMBIGUOUS


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (503, b"<html>Service Unavailable</html>", Outcome.TRANSIENT),
        (200, b'{"code":"000","da', Outcome.AMBIGUOUS),
        (200, b'{"code":"000","desc":"ok"}', Outcome.ACCEPTED),  # no msgId: no receipt
        (200, b'{"code":"000","data":{"msgId":""}}', Outcome.ACCEPTED),
        (403, b"<html>Forbidden</html>", Outcome.ACCOUNT),
    ],
)
def test_an_undocumented_sms_body_is_classified(status: int, body: bytes, outcome: Outcome) -> None:
    (result,) = sms().send_results(CODE_1, Reply(status, body))
    assert result.outcome is outcome


def test_one_number_goes_to_the_single_endpoint_with_every_form_field() -> None:
    message = call_to(1, "+8613800138000", options={"allowedCallTime": "09:00-21:00"})
    call = voice().build_send([message], 0)
    assert (call.method, call.url) == ("POST", f"http://eolink.test{VOICE_PATH}")
    assert dict(call.headers) == HEADERS
    assert call.form == {
        "mobile": "13800138000",
        "templateId": "1011340330258440200",
        "param": "张三",
        "allowedCallTime": "09:00-21:00",
        "transData": "",
        "isNotifyFileId": "",
    }


def test_many_numbers_share_one_batch_request() -> None:
    call = voice().build_send(THREE, 0)
    assert call.url == f"http://eolink.test{BATCH_PATH}"
    assert call.form is not None
    assert call.form["mobile"] == "13800138000,13900139000,02151234529"
    assert voice().max_batch == 1000


def test_a_batch_answer_is_read_per_number() -> None:
    data = [
        {"mobile": "13900139000", "callId": "B"},
        {"mobile": "13800138000", "callId": "A"},
        {"mobile": "02151234529", "code": "001", "desc": "号码错误"},
    ]
    results = voice().send_results(THREE, answer(code="000", data=data))
    assert [(r.outcome, r.ref) for r in results] == [
        (Outcome.ACCEPTED, "A"),
        (Outcome.ACCEPTED, "B"),
        (Outcome.PERMANENT, None),
    ]


def test_a_number_an_accepted_batch_leaves_out_is_ambiguous_never_resent() -> None:
    results = voice().send_results(
        THREE, answer(code="000", data=[{"mobile": "13800138000", "callId": "A"}])
    )
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.AMBIGUOUS, Outcome.AMBIGUOUS]


def test_one_number_twice_in_a_batch_gets_each_entry_once() -> None:
    twice = [call_to(1, "+8613800138000"), call_to(2, "+8613800138000")]
    data = [{"mobile": "13800138000", "callId": "A"}, {"mobile": "13800138000", "callId": "B"}]
    assert [r.ref for r in voice().send_results(twice, answer(code="000", data=data))] == ["A", "B"]


def test_sms_numbers_with_their_own_codes_share_one_request() -> None:
    provider = sms()
    first = Message(id=1, to="+8615800000000", content=SEED_MSG, params=("1234",))
    second = Message(id=2, to="+8613800000000", content=SEED_MSG, params=("4321",))
    other_text = Message(id=3, to="+8613800000000", content=SEED_MSG + "!", params=("4321",))
    assert provider.batch_key(first) == provider.batch_key(second) != provider.batch_key(other_text)
    call = provider.build_send([first, second], 0)
    assert (call.method, call.url) == ("POST", f"http://eolink.test{SMS_PATH}")
    assert dict(call.headers) == HEADERS
    assert call.json == {
        "msg": SEED_MSG,
        "params": "15800000000,1234;13800000000,4321",
        "sendtime": "",
        "extend": "",
        "uid": "",
    }
    assert provider.max_batch == 1000


@pytest.mark.parametrize(
    ("length", "parts"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_sms_segments_are_70_then_67_characters(length: int, parts: int) -> None:
    assert segments("验" * length) == parts


def test_sms_cost_is_recipients_times_segments() -> None:
    assert cost(3, "x" * 71) == 6
    messages = [
        Message(
            id=i, to="+8613800138000", content="【签名】" + "码" * 60 + "{$var}", params=("12345",)
        )
        for i in range(4)
    ]
    assert sms().cost_of(messages) == 4 * 1  # 4 + 60 + 5 = 69 characters: one segment each
    long = [
        Message(
            id=1, to="+8613800138000", content="【签名】" + "码" * 62 + "{$var}", params=("12345",)
        )
    ]
    assert sms().cost_of(long) == 2  # 71 characters once the code is in


# -- validation --------------------------------------------------------------------------


def test_a_voice_call_may_go_to_a_mobile_or_a_landline() -> None:
    assert (
        voice().validate(Draft("apispace-voice", "138 0013 8000", template="1011")).to
        == "+8613800138000"
    )
    assert (
        voice().validate(Draft("apispace-voice", "021-5123-4529", template="1011")).to
        == "+862151234529"
    )


def test_the_seed_sms_example_is_valid() -> None:
    valid = sms().validate(Draft("apispace-sms", "15800000000", content=SEED_MSG, params=("1234",)))
    assert (valid.to, valid.content, valid.params) == ("+8615800000000", SEED_MSG, ("1234",))


def test_a_link_with_spaces_around_it_is_valid() -> None:
    text = "【Eolink】验证码{$var}，详情见 https://eolink.com/a?b=1 ，请勿泄露。"
    assert (
        sms().validate(Draft("apispace-sms", "13800138000", content=text, params=("1",))).content
        == text
    )


S = "apispace-sms"


@pytest.mark.parametrize(
    ("draft", "reason"),
    [
        (Draft(S, "13800138000", content="您的验证码是{$var}", params=("1",)), "signature in 【】"),
        (Draft(S, "13800138000", content="【E】您的验证码是{$var}", params=("1",)), "2 to 20"),
        (
            Draft(S, "13800138000", content="【" + "字" * 21 + "】验证码{$var}", params=("1",)),
            "2 to 20",
        ),
        (Draft(S, "13800138000", content="【Eo link】验证码{$var}", params=("1",)), "spaces"),
        *[
            (
                Draft(S, "13800138000", content=f"【Eo{ch}link】验证码{{$var}}", params=("1",)),
                "spaces",
            )
            for ch in "-+*&%#@~"
        ],
        (Draft(S, "13800138000", content="【Eolink】您的验证码是1234", params=("1",)), "{$var}"),
        (
            Draft(S, "13800138000", content="【Eolink】【通知】验证码{$var}", params=("1",)),
            "begin or end",
        ),
        (
            Draft(S, "13800138000", content="【Eolink】验证码{$var}【通知】", params=("1",)),
            "begin or end",
        ),
        (
            Draft(
                S,
                "13800138000",
                content="【Eolink】验证码{$var}，见https://a.cn/x 。",
                params=("1",),
            ),
            "link",
        ),
        (
            Draft(
                S,
                "13800138000",
                content="【Eolink】验证码{$var}，见 https://a.cn/x。",
                params=("1",),
            ),
            "link",
        ),
        (
            Draft(S, "13800138000", content="【Eolink】" + "字" * 500 + "{$var}", params=("1",)),
            "500",
        ),
        (Draft(S, "13800138000", content=""), "required"),
    ],
)
def test_the_seeds_text_rules_are_refused_on_content(draft: Draft, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        sms().validate(draft)
    assert any(e.field == "content" and reason in e.message for e in caught.value.errors)


@pytest.mark.parametrize(
    ("to", "params", "extra", "field"),
    [
        ("02151234529", ("1",), {}, "to"),
        ("+447911123456", ("1",), {}, "to"),
        ("13800138000", (), {}, "params"),
        ("13800138000", ("1", "2"), {}, "params"),
        ("13800138000", ("12;34",), {}, "params[0]"),
        ("13800138000", ("12,34",), {}, "params[0]"),
        ("13800138000", ("9" * 33,), {}, "params[0]"),
        ("13800138000", ("1",), {"template": "7"}, "template"),
        ("13800138000", ("1",), {"options": {"sendtime": "x"}}, "options.sendtime"),
        ("13800138000", ("1",), {"options": {"uid": "u" * 65}}, "options.uid"),
    ],
)
def test_bad_sms_input_is_refused_naming_the_field(
    to: str, params: tuple[str, ...], extra: dict[str, Any], field: str
) -> None:
    draft = Draft(S, to, content=SEED_MSG, params=params, **extra)
    assert field in refused(sms(), draft)


def test_without_a_token_nothing_is_built() -> None:
    with pytest.raises(MissingCredentials, match="NOTIFYQ_APISPACE_TOKEN"):
        ApispaceVoice(None, "http://x", "http://y").build_send(ONE, 0)
    with pytest.raises(MissingCredentials, match="NOTIFYQ_APISPACE_TOKEN"):
        ApispaceSms(None, "http://x").build_send(CODE_1, 0)


# -- the report pull -----------------------------------------------------------------------

SEED_REPORT = {
    "code": "0",
    "data": [
        {
            "callId": "YYTZ1014203626049417217",
            "code": "000",
            "desc": "成功",
            "result": {
                "timeLength": 5,
                "answerTime": "1661846594000",
                "invokeTime": "1661846587533",
                "mobile": "xxxxxx",
                "callTime": "1661846591000",
                "callType": "0",
                "byeTime": "1661846599000",
            },
            "voiceCode": "1000",
            "voiceCodeDesc": "语音播放成功",
        }
    ],
}


def test_the_report_pull_is_a_get_that_is_never_repeated_blind() -> None:
    call = voice().report_call(500)
    assert (call.method, call.url) == ("GET", "http://cb.test/api/voice/report")
    assert call.params == {"count": "500"}
    assert dict(call.headers) == HEADERS
    assert call.idempotent is False
    assert voice().pulls_reports and not sms().pulls_reports


def test_the_seed_report_is_a_delivered_receipt() -> None:
    (receipt,) = voice().parse_report(answer(**SEED_REPORT))
    assert (receipt.ref, receipt.delivered, receipt.code) == (
        "YYTZ1014203626049417217",
        True,
        "1000",
    )
    assert receipt.message == "语音播放成功"
    assert receipt.detail["timeLength"] == 5
    assert receipt.detail["byeTime"] == "1661846599000"
    assert "mobile" not in receipt.detail


def test_a_report_not_played_is_undelivered() -> None:
    entry = {**SEED_REPORT["data"][0], "voiceCode": "1001", "voiceCodeDesc": "无人接听"}  # type: ignore[dict-item]
    (receipt,) = voice().parse_report(answer(code="0", data=[entry]))
    assert (receipt.delivered, receipt.code, receipt.message) == (False, "1001", "无人接听")


def test_an_empty_report_page_is_empty() -> None:
    page = voice().read_report(answer(code="0", data=[]))
    assert (page.receipts, page.size) == ([], 0)


def test_an_unreadable_report_entry_is_skipped_and_counted_with_the_page_size() -> None:
    good = SEED_REPORT["data"][0]  # type: ignore[index]
    page = voice().read_report(answer(code="0", data=[good, {"voiceCode": "1000"}, "junk"]))
    assert (len(page.receipts), page.size, page.skipped) == (1, 3, 2)


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b'{"code":"0","data":[{"callId"',
        b'{"code":"003","desc":"\xe4\xb8\x8d\xe5\x9c\xa8IP\xe7\x99\xbd\xe5\x90\x8d\xe5\x8d\x95"}',
        b'{"data":[]}',
        b'{"code":"0","data":{"callId":"1"}}',
    ],
)
def test_a_report_page_that_is_not_one_raises(body: bytes) -> None:
    with pytest.raises(UnreadableReply):
        voice().parse_report(Reply(200, body))


# -- SMS delivery reports (the ASSUMED push) ------------------------------------------------

FIRST = Message(id=1, to="+8615800000000", content=SEED_MSG, params=("1234",))
SECOND = Message(id=2, to="+8613800000000", content=SEED_MSG, params=("4321",))


def report(mobile: str = "15800000000", status: str = "DELIVRD", **more: object) -> dict:
    return {
        "msgId": "SMS77",
        "mobile": mobile,
        "status": status,
        "desc": "ok",
        "reportTime": "2026-11-27 12:00:00",
        **more,
    }


def test_one_msgid_for_a_batch_gives_each_number_its_own_reference() -> None:
    results = sms().send_results([FIRST, SECOND], answer(code="000", data={"msgId": "SMS77"}))
    refs = [r.ref for r in results]
    assert refs == [sms_ref("SMS77", "15800000000"), sms_ref("SMS77", "13800000000")]
    assert refs[0] != refs[1]
    assert all(ref is not None and ref.startswith("SMS77:") for ref in refs)


def test_each_numbers_report_matches_the_reference_its_send_stored() -> None:
    results = sms().send_results([FIRST, SECOND], answer(code="000", data={"msgId": "SMS77"}))
    receipts = ApispaceSms.parse_receipts(
        [report("13800000000", "UNDELIV"), report("+86 158 0000 0000")]
    )
    by_ref = {r.ref: r for r in receipts}
    assert by_ref[results[0].ref].delivered is True  # type: ignore[index]
    assert (by_ref[results[1].ref].delivered, by_ref[results[1].ref].code) == (  # type: ignore[index]
        False,
        "UNDELIV",
    )


@pytest.mark.parametrize(
    "spelling", ["15800000000", "8615800000000", "+8615800000000", 15800000000]
)
def test_a_reports_number_in_any_spelling_makes_the_same_reference(spelling: object) -> None:
    (receipt,) = ApispaceSms.parse_receipts(report(mobile=spelling))  # type: ignore[arg-type]
    assert receipt.ref == sms_ref("SMS77", "15800000000")


def test_a_reference_never_shows_the_number_and_fits_the_ledger() -> None:
    ref = sms_ref("SMS77", "15800000000")
    assert "15800000000" not in ref and "0000000" not in ref
    long_a, long_b = "M" * 100 + "a", "M" * 100 + "b"
    assert len(sms_ref(long_a, "15800000000")) == 64
    assert sms_ref(long_a, "15800000000") != sms_ref(long_b, "15800000000")


@pytest.mark.parametrize(
    ("status", "delivered"),
    [
        ("DELIVRD", True),
        ("UNDELIV", False),
        ("EXPIRED", False),
        ("REJECTD", False),
        ("MK:0001", False),
    ],
)
def test_only_delivrd_is_delivered(status: str, delivered: bool) -> None:
    (receipt,) = ApispaceSms.parse_receipts(report(status=status))
    assert (receipt.delivered, receipt.code, receipt.message) == (delivered, status, "ok")
    assert receipt.detail == {"msgId": "SMS77", "reportTime": "2026-11-27 12:00:00"}


@pytest.mark.parametrize(
    "body",
    [
        [],
        "DELIVRD",
        None,
        [report(), "junk"],  # one bad entry refuses the whole push
        {"mobile": "15800000000", "status": "DELIVRD"},
        report(msgId=""),
        report(msgId={"a": 1}),
        report(status=""),
        report(status=None),
        report(mobile="12345"),
        report(mobile="+447911123456"),  # not a mainland number: never one we sent
        [report(), {k: v for k, v in report().items() if k != "status"}],
    ],
)
def test_a_push_that_is_not_sms_reports_raises_without_echoing_a_number(body: object) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)) as caught:
        ApispaceSms.parse_receipts(body)
    assert "15800000000" not in str(caught.value) and "7911123456" not in str(caught.value)


# -- landlines in a batch --------------------------------------------------------------------------


def test_a_beijing_landline_goes_out_with_its_0_in_a_batch() -> None:
    messages = [call_to(1, "+8613800138000"), call_to(2, "+861065529988")]
    assert voice().build_send(messages, 0).form["mobile"] == "13800138000,01065529988"  # type: ignore[index]


@pytest.mark.parametrize(
    "spellings",
    [
        ("+86 138 0013 8000", "8613900139000", "02151234529"),
        ("8613800138000", "+8613900139000", "021-5123-4529"),
    ],
)
def test_a_batch_answer_is_paired_by_the_normalised_number(spellings: tuple[str, ...]) -> None:
    data = [
        {"mobile": number, "callId": f"C{i}"} for i, number in reversed(list(enumerate(spellings)))
    ]
    results = voice().send_results(THREE, answer(code="000", data=data))
    assert [(r.outcome, r.ref) for r in results] == [
        (Outcome.ACCEPTED, "C0"),
        (Outcome.ACCEPTED, "C1"),
        (Outcome.ACCEPTED, "C2"),
    ]


def test_a_batch_refused_for_a_parameter_error_asks_to_be_split() -> None:
    results = voice().send_results(THREE, answer(code="001", desc="参数校验错误"))
    assert all(r.splits and r.outcome is Outcome.PERMANENT for r in results)


@pytest.mark.parametrize("code", ["0", "000"])
def test_a_report_page_answered_0_or_000_is_read(code: str) -> None:
    page = {"code": code, "data": [{"callId": "C1", "code": "000", "voiceCode": "1000"}]}
    read = voice().read_report(Reply(200, json.dumps(page).encode()))
    assert [(r.ref, r.delivered) for r in read.receipts] == [("C1", True)]


def test_an_sms_accepted_without_a_msgid_is_sent_with_no_receipt_expected() -> None:
    two = [*CODE_1, Message(id=2, to="+8613900139000", content=SEED_MSG, params=("4321",))]
    for body in ({"code": "000", "desc": "成功"}, {"code": "000", "data": {}}):
        results = sms().send_results(two, Reply(200, json.dumps(body).encode()))
        assert [(r.outcome, r.ref, r.code) for r in results] == [
            (Outcome.ACCEPTED, None, "000"),
            (Outcome.ACCEPTED, None, "000"),
        ]
