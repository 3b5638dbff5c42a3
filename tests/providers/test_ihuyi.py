"""ihuyi: the seed's password vectors, every documented code's outcome, both answer
formats, the pushes, and validation at the door."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from config.settings import Settings
from providers.base import Draft, Message, Outcome, Reply
from providers.ihuyi import (
    ADMIN_CODES,
    SUBMIT_CODES,
    Ihuyi,
    getnum_password,
    submit_password,
)
from tests.providers.codes_doc import outcomes

SEED_ACCOUNT = "test"
SEED_APIKEY = "1q784322ba1d9bb88d50cf5cdfd89k7d"


def test_submit_password_matches_the_seed_example() -> None:
    # md5('test1q784322ba1d9bb88d50cf5cdfd89k7d138xxxxxxxx11251451544941'), by md5sum
    assert submit_password(SEED_ACCOUNT, SEED_APIKEY, "138xxxxxxxx", "1125", 1451544941) == (
        "f0a392b392252018db9398d1c669a383"
    )


def test_getnum_password_matches_the_seed_example() -> None:
    assert (
        getnum_password(SEED_ACCOUNT, SEED_APIKEY, "1451544941")
        == "73f6e7a36e0fd30ad7eea940ca1896b2"
    )


def client() -> Ihuyi:
    return Ihuyi("acct", SecretStr("key"), "http://ihuyi.test")


MESSAGE = Message(id=7, to="+8613800138000", content="您的订单号是：9633。")

#: the outcomes docs/codes.md states: the one table, read by the tests
EXPECTED = outcomes("ihuyi")


def test_every_documented_submit_code_is_in_the_table() -> None:
    assert set(SUBMIT_CODES) == set(EXPECTED)


@pytest.mark.parametrize(("code", "outcome"), sorted(EXPECTED.items()))
def test_submit_code_has_its_outcome_in_json_and_xml(code: str, outcome: Outcome) -> None:
    voiceid = "60495654" if code == "2" else "0"
    as_json = Reply(200, f'{{"code":{code},"msg":"m","voiceid":"{voiceid}"}}'.encode())
    as_xml = Reply(
        200,
        (
            '<?xml version="1.0" encoding="utf-8"?><SubmitResult xmlns="http://106.ihuyi.com/">'
            f"<code>{code}</code><msg>m</msg><voiceid>{voiceid}</voiceid></SubmitResult>"
        ).encode(),
    )
    for reply in (as_json, as_xml):
        (result,) = client().send_results([MESSAGE], reply)
        assert result.outcome is outcome
        assert result.code == code
        assert result.ref == ("60495654" if code == "2" else None)


@pytest.mark.parametrize(("code", "seconds"), [("4080", 1), ("4081", 60), ("4082", 86400)])
def test_cap_codes_say_how_long_the_number_is_blocked(code: str, seconds: int) -> None:
    (result,) = client().send_results(
        [MESSAGE], Reply(200, f'{{"code":{code},"msg":"x","voiceid":"0"}}'.encode())
    )
    assert result.block_seconds == seconds


def test_an_unknown_code_is_ambiguous_and_keeps_its_code() -> None:
    (result,) = client().send_results(
        [MESSAGE], Reply(200, b'{"code":9999,"msg":"new","voiceid":"0"}')
    )
    assert (result.outcome, result.code) == (Outcome.AMBIGUOUS, "9999")


@pytest.mark.parametrize(
    "body",
    [
        b'{"code":2,"msg":"\xe6\x8f',
        b"<SubmitResult><code>2</code><msg>ok",
        b'{"code":2,"msg":"ok","voiceid":"0"}',
    ],
)
def test_an_undocumented_answer_is_ambiguous_never_raised(body: bytes) -> None:
    (result,) = client().send_results([MESSAGE], Reply(200, body))
    assert result.outcome is Outcome.AMBIGUOUS


def test_submit_is_a_signed_post_with_no_password_in_the_url() -> None:
    call = client().build_send([MESSAGE], 1451544941.5)
    assert call.method == "POST"
    assert call.url == "http://ihuyi.test/webservice/voice.php?method=Submit"
    assert call.form is not None
    assert call.form["mobile"] == "13800138000"
    assert call.form["time"] == "1451544941"
    assert call.form["format"] == "json"
    assert call.form["password"] == submit_password(
        "acct", "key", "13800138000", MESSAGE.content, 1451544941
    )


def test_a_landline_goes_out_with_its_area_code() -> None:
    call = client().build_send([Message(id=1, to="+862151234529", content="x")], 0)
    assert call.form is not None and call.form["mobile"] == "02151234529"


@pytest.mark.parametrize(
    "spelling",
    ["13800138000", "+86 138 0013 8000", "8613800138000", "+8613800138000", "138-0013-8000"],
)
def test_every_spelling_of_a_number_normalises_to_one_e164(spelling: str) -> None:
    valid = client().validate(Draft("ihuyi", spelling, content="您好"))
    assert valid.to == "+8613800138000"


def test_a_landline_with_area_code_is_accepted() -> None:
    assert client().validate(Draft("ihuyi", "021-5123-4529", content="您好")).to == "+862151234529"


def test_receipt_push_is_parsed() -> None:
    receipt = Ihuyi.parse_receipt(
        {
            "code": "-6",
            "msg": "无人接听",
            "mobilephone": "13800138000",
            "talktime": "0",
            "voiceid": "60495654",
            "report_time": "2018-05-24 17:46:50",
        }
    )
    assert (receipt.ref, receipt.delivered, receipt.code) == ("60495654", False, "-6")
    assert Ihuyi.parse_receipt({"code": "2", "voiceid": "1", "talktime": "12"}).delivered


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"code": "2"},
        {"voiceid": "1"},
        {"code": "2", "voiceid": "0"},
    ],
)
def test_a_malformed_receipt_is_refused(form: dict[str, str]) -> None:
    with pytest.raises((KeyError, ValueError)):
        Ihuyi.parse_receipt(form)


def test_template_audit_push_is_parsed() -> None:
    audit = Ihuyi.parse_template_audit({"code": "0", "msg": "驳回: 含敏感词", "templateid": "1234"})
    assert (audit.template_id, audit.approved) == ("1234", False)


def test_admin_answers_are_read_with_their_values() -> None:
    ok = Ihuyi.parse_admin(Reply(200, b'{"code":2,"msg":"ok","num":"856"}'), "num")
    assert (ok.ok, ok.value) == (True, "856")
    denied = Ihuyi.parse_admin(
        Reply(200, b"<GetNumResult><code>405</code><msg>bad</msg><num>0</num></GetNumResult>"),
        "num",
    )
    assert (denied.ok, denied.outcome, denied.value) == (False, Outcome.ACCOUNT, None)
    assert set(ADMIN_CODES) >= {"2", "400", "401", "402", "404", "405", "4050", "407", "408"}


# -- the base URL, an unfiled template -------------------------------------------------------------


def test_the_default_base_url_is_https() -> None:

    assert Settings(_env_file=None).provider("ihuyi").base_url.startswith("https://")  # type: ignore[call-arg]


def test_no_template_filed_fails_the_notification_and_leaves_the_account_open() -> None:
    (result,) = client().send_results([MESSAGE], Reply(200, b'{"code":4071,"msg":"x"}'))
    assert (result.outcome, result.code) == (Outcome.PERMANENT, "4071")


@pytest.mark.parametrize("code", ["-7", "-13", "9", "abc"])
def test_a_receipt_with_an_undocumented_code_is_undelivered_with_its_raw_code(code: str) -> None:
    receipt = Ihuyi.parse_receipt({"code": code, "voiceid": "60495654", "msg": "?"})
    assert (receipt.ref, receipt.delivered, receipt.code) == ("60495654", False, code)
