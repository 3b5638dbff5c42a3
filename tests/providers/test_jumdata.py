"""jumdata: the seed's signature vector, every documented code's outcome (and the assumed
blocked and outside-window answers), the signed form, the callback, and validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from config.settings import Settings
from providers.base import Message, MissingCredentials, Outcome, Reply
from providers.jumdata import BLOCKED_CODE, CODES, WINDOW_CODE, Jumdata, sign
from tests.providers.codes_doc import outcomes

NOTIFY = "https://notifyq.test/callbacks/tok/jumdata"


def test_sign_matches_the_seed_example() -> None:
    # sha256('xyzxy2121zxyz' + 'efcefcef1121cefcefc1212121' + '1555378976238'), by sha256sum
    assert sign("xyzxy2121zxyz", "efcefcef1121cefcefc1212121", 1555378976238) == (
        "6ddcdc405743c576cb6d34b17b47ed56e2b9b6670fae1fe85ed01244fd31558b"
    )


def client(notify_url: str | None = NOTIFY) -> Jumdata:
    return Jumdata("app-1", SecretStr("secret-1"), "http://jumdata.test/", notify_url)


MESSAGE = Message(id=41, to="+8613800138000", template="1001", params=("张三", "明天"))

#: the outcomes docs/codes.md states: the one table, read by the tests
EXPECTED = outcomes("jumdata")


def reply(code: int | str, msg: str = "m", **extra: object) -> Reply:
    return Reply(200, json.dumps({"code": code, "msg": msg, **extra}, ensure_ascii=False).encode())


def test_every_documented_code_and_the_two_assumed_ones_are_in_the_table() -> None:
    assert set(CODES) == set(EXPECTED)


@pytest.mark.parametrize(("code", "outcome"), sorted(EXPECTED.items()))
def test_each_code_has_its_outcome(code: str, outcome: Outcome) -> None:
    (result,) = client().send_results(
        [MESSAGE], reply(int(code), "x", taskNo="6956", data={"callId": "12121212121212"})
    )
    assert (result.outcome, result.code) == (outcome, code)
    assert result.ref == ("12121212121212" if code == "200" else None)


def test_a_blocked_number_waits_a_whole_day_since_every_attempt_restarts_the_block() -> None:
    (result,) = client().send_results([MESSAGE], reply(BLOCKED_CODE))
    assert (result.outcome, result.block_seconds) == (Outcome.CAPPED, 86400)


def test_outside_the_calling_window_is_deferred_not_retried() -> None:
    (result,) = client().send_results([MESSAGE], reply(WINDOW_CODE))
    assert (result.outcome, result.block_seconds) == (Outcome.CAPPED, 600)


@pytest.mark.parametrize("msg", ["该号码已被限制呼叫", "超过3次,已被限制", "限制期间不可呼叫"])
def test_a_refusal_that_says_the_number_is_blocked_is_the_block_whatever_its_code(msg: str) -> None:
    (result,) = client().send_results([MESSAGE], reply(999, msg))
    assert (result.outcome, result.block_seconds, result.code) == (Outcome.CAPPED, 86400, "999")


def test_a_length_limit_is_not_mistaken_for_the_block() -> None:
    (result,) = client().send_results([MESSAGE], reply(400, "变量长度超过限制"))
    assert result.outcome is Outcome.PERMANENT


@pytest.mark.parametrize(
    "body",
    [
        b'{"code":200,"msg":"\xe6\x88',
        b'{"code":200,"msg":"ok","taskNo":"1"}',  # no callId
        b'{"msg":"no code"}',
    ],
)
def test_an_undocumented_answer_is_ambiguous(body: bytes) -> None:
    (result,) = client().send_results([MESSAGE], Reply(200, body))
    assert result.outcome is Outcome.AMBIGUOUS


def test_the_send_is_a_signed_form_with_the_id_to_round_trip() -> None:
    message = Message(
        id=41, to="+8613800138000", template="1001", params=("张三",), options={"playTimes": 2}
    )
    call = client().build_send([message], 1555378976.2385)
    assert (call.method, call.url) == ("POST", "http://jumdata.test/voice-notify/send")
    assert call.form == {
        "appId": "app-1",
        "timestamp": "1555378976238",
        "sign": sign("app-1", "secret-1", "1555378976238"),
        "mobile": "13800138000",
        "templateId": "1001",
        "param": "张三",
        "playTimes": "2",
        "notifyUrl": NOTIFY,
        "notifyData": "41",
    }


def test_params_are_joined_by_commas_and_no_callback_url_means_none_sent() -> None:
    form = client(None).build_send([MESSAGE], 0).form
    assert form is not None
    assert form["param"] == "张三,明天"
    assert "notifyUrl" not in form and "playTimes" not in form


def test_without_credentials_nothing_is_built() -> None:
    with pytest.raises(MissingCredentials, match="NOTIFYQ_JUMDATA_APP_ID"):
        Jumdata(None, SecretStr("s"), "http://x", None).build_send([MESSAGE], 0)
    with pytest.raises(MissingCredentials, match="NOTIFYQ_JUMDATA_APP_SECRET"):
        Jumdata("a", None, "http://x", None).build_send([MESSAGE], 0)


# -- the callback ------------------------------------------------------------------------------


def test_a_successful_call_result_is_delivered() -> None:
    receipt = Jumdata.parse_callback(
        {
            "callId": "12121212121212",
            "callStatus": "0",
            "callStatusText": "成功",
            "callTime": "12",
            "notifyData": "41",
        }
    )
    assert (receipt.ref, receipt.delivered, receipt.code, receipt.message) == (
        "12121212121212",
        True,
        "0",
        "成功",
    )
    assert receipt.detail == {"callTime": 12, "notifyData": "41"}


def test_a_failed_call_result_from_json_is_undelivered() -> None:
    receipt = Jumdata.parse_callback(
        {"callId": 99, "callStatus": 1, "callStatusText": "失败", "callTime": 0}
    )
    assert (receipt.ref, receipt.delivered, receipt.code) == ("99", False, "1")


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"callStatus": "0"},
        {"callId": "1"},
        {"callId": "", "callStatus": "0"},
        {"callId": "1", "callStatus": ""},
    ],
)
def test_a_malformed_callback_is_refused(form: dict[str, str]) -> None:
    with pytest.raises((KeyError, ValueError)):
        Jumdata.parse_callback(form)


# -- the window on Beijing time --------------------------------------------------------------------


def test_the_window_is_beijing_time_whatever_the_timezone_setting() -> None:

    for zone in ("UTC", "America/New_York", "Asia/Shanghai"):
        window = Settings(_env_file=None, timezone=zone).policy("jumdata").window  # type: ignore[call-arg]
        assert window is not None and window.zone.key == "Asia/Shanghai"
        assert not window.is_open(datetime(2026, 12, 2, 0, 59, tzinfo=UTC))  # 08:59 Beijing
        assert window.is_open(datetime(2026, 12, 2, 1, 0, tzinfo=UTC))  # 09:00 Beijing
        assert not window.is_open(datetime(2026, 12, 2, 13, 0, tzinfo=UTC))  # 21:00 Beijing


@pytest.mark.parametrize("msg", ["呼叫过于频繁", "呼叫次数超限", "限呼"])
def test_words_the_seed_does_not_use_do_not_trigger_the_24_hour_wait(msg: str) -> None:
    (result,) = client().send_results([MESSAGE], reply(400, msg))
    assert (result.outcome, result.block_seconds) == (Outcome.PERMANENT, None)


@pytest.mark.parametrize("status", ["2", "-1", "9", "busy"])
def test_a_callback_with_an_undocumented_status_is_kept_with_its_raw_value(status: str) -> None:
    receipt = Jumdata.parse_callback({"callId": "99", "callStatus": status, "callTime": "0"})
    assert (receipt.ref, receipt.delivered, receipt.code) == ("99", False, status)
