"""What each provider's ``validate`` refuses, naming the field (one table of drafts, one
of options), and how it keeps the options it takes (in the types its API wants).
APISpace SMS's refusals say *why* as well, and stay in its own tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from providers.base import Draft, Provider, Valid
from tests.providers import test_apispace, test_ihuyi, test_itniotech, test_jumdata
from tests.providers.refusals import refused

IH, J, IT, V = "ihuyi", "jumdata", "itniotech", "apispace-voice"

CLIENTS: dict[str, Callable[[], Provider]] = {
    IH: test_ihuyi.client,
    J: test_jumdata.client,
    IT: test_itniotech.client,
    V: test_apispace.voice,
}


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        (Draft(IH, "12345", content="x"), "to"),
        (Draft(IH, "+14155550100", content="x"), "to"),
        (Draft(IH, "13800138000", content=""), "content"),
        (Draft(IH, "13800138000", content="您的客户【变量】将于2天后过生日"), "content"),
        (Draft(IH, "13800138000", content="x" * 501), "content"),
        (Draft(IH, "13800138000", content="x", template="123"), "template"),
        (Draft(IH, "13800138000", content="x", options={"playTimes": "2"}), "options.playTimes"),
        (Draft(J, "021-5123-4529", template="1"), "to"),
        (Draft(J, "+14155550100", template="1"), "to"),
        (Draft(J, "1380013800", template="1"), "to"),
        (Draft(J, "13800138000"), "template"),
        (Draft(J, "13800138000", template="a b"), "template"),
        (Draft(J, "13800138000", template="x" * 65), "template"),
        (Draft(J, "13800138000", template="1", content="text"), "content"),
        (Draft(J, "13800138000", template="1", params=("张,三",)), "params[0]"),
        (Draft(IT, "12345", template="f"), "to"),
        (Draft(IT, "13800138000", template="f"), "to"),  # no country code: +1 380… is no number
        (Draft(IT, "+91 98765", template="f"), "to"),
        (Draft(IT, "+919876543210"), "template"),
        (Draft(IT, "+919876543210", template="f" * 129), "template"),
        (Draft(IT, "+919876543210", template="f", content="text"), "content"),
        (Draft(IT, "+919876543210", template="f", params=("a",)), "params"),
        (Draft(V, "12345", template="1"), "to"),
        (Draft(V, "+14155550100", template="1"), "to"),
        (Draft(V, "13800138000"), "template"),
        (Draft(V, "13800138000", template="T-1"), "template"),
        (Draft(V, "13800138000", template="1", content="text"), "content"),
        (Draft(V, "13800138000", template="1", params=("a,b",)), "params[0]"),
        (Draft(V, "13800138000", template="1", params=("",)), "params[0]"),
    ],
)
def test_bad_input_is_refused_naming_the_field(draft: Draft, field: str) -> None:
    assert field in refused(CLIENTS[draft.provider](), draft)


#: a draft each provider takes, for an option to spoil
GOOD: dict[str, Draft] = {
    J: Draft(J, "13800138000", template="1"),
    IT: Draft(IT, "+919876543210", template="f"),
    V: Draft(V, "13800138000", template="1"),
}

#: each provider's options that are refused, with a value each
BAD_OPTIONS: dict[str, list[tuple[str, str]]] = {
    J: [("playTimes", "0"), ("playTimes", "4"), ("playTimes", "two"), ("notifyUrl", "http://x")],
    IT: [
        ("maxDuration", "0"),
        ("maxDuration", "121"),
        ("maxRingingTime", "19"),
        ("maxRingingTime", "121"),
        ("loopCount", "0"),
        ("loopCount", "10"),
        ("calledInfo", "x" * 1001),
        ("displayNum", "123456"),
        ("displayNum", "1234567890123456"),
        ("displayNum", "10081abc"),
        ("playTimes", "1"),
    ],
    V: [
        ("allowedCallTime", "9-21"),
        ("allowedCallTime", "25:00-26:00"),
        ("allowedCallTime", "09:00-09:00"),
        ("allowedCallTime", "09:00-24:30"),
        ("transData", "x" * 257),
        ("isNotifyFileId", "maybe"),
        ("playTimes", "2"),
    ],
}


@pytest.mark.parametrize(
    ("provider", "option", "value"),
    [(provider, *row) for provider, rows in BAD_OPTIONS.items() for row in rows],
)
def test_a_bad_option_is_refused_naming_it(provider: str, option: str, value: str) -> None:
    draft = replace(GOOD[provider], options={option: value})
    assert f"options.{option}" in refused(CLIENTS[provider](), draft)


#: options as a caller writes them, and as each provider keeps them
IT_GIVEN = {"maxDuration": "120", "maxRingingTime": "20", "loopCount": "9", "calledInfo": ""}
IT_KEPT = {"maxDuration": 120, "maxRingingTime": 20, "loopCount": 9}
V_GIVEN = {"allowedCallTime": "09:00 - 21:00", "isNotifyFileId": "1", "transData": "order-7"}
V_KEPT = {"allowedCallTime": "09:00-21:00", "isNotifyFileId": "true", "transData": "order-7"}
#: an itniotech option kept as written
IT_AS_WRITTEN = {"displayNum": "1008122211"}


@pytest.mark.parametrize(
    ("draft", "e164", "kept"),
    [
        (
            Draft(
                J,
                "+86 138 0013 8000",
                template="1001",
                params=("张三",),
                options={"playTimes": "3"},
            ),
            "+8613800138000",
            {"playTimes": 3},
        ),
        (
            Draft(IT, "+919876543210", template="f.mp3", options=IT_GIVEN | IT_AS_WRITTEN),
            "+919876543210",
            IT_KEPT | IT_AS_WRITTEN,
        ),
        (
            Draft(V, "13800138000", template="1011", params=("张三", "明天"), options=V_GIVEN),
            "+8613800138000",
            V_KEPT,
        ),
    ],
)
def test_options_are_kept_in_their_wire_types(
    draft: Draft, e164: str, kept: dict[str, object]
) -> None:
    valid = Valid(to=e164, template=draft.template, params=draft.params, options=kept)
    assert CLIENTS[draft.provider]().validate(draft) == valid
