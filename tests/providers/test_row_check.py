"""A campaign's row check (``Provider.row_check``) agrees with ``validate`` row for row:
the same number, content and variables for a good row, the same first refused field and
reason for a bad one, and no row check at all where the shared fields are refused (each
row then takes ``validate`` and is refused for them)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import Settings
from providers import registry
from providers.base import Draft, InvalidRequest, Provider

PROVIDERS = registry.build_all(Settings(_env_file=None))

NUMBERS = st.one_of(
    st.from_regex(r"1[0-9]{10}", fullmatch=True),
    st.sampled_from(
        [
            "13800138000",
            "+86 138 0013 8000",
            "8613800138000",
            "10012345678",
            "02151234529",
            "+1 415 555 0100",
            "１３８００１３８０００",
            "",
            "abc",
        ]
    ),
)
PARAMS = st.lists(st.sampled_from(["张三", "", "a,b", "1;2", "明天", "x" * 40]), max_size=3).map(
    tuple
)

#: shared fields each provider with a row check takes, and some it refuses
SHARED: dict[str, list[dict[str, Any]]] = {
    "jumdata": [
        {"template": "1001", "content": None, "options": {"playTimes": "2"}},
        {"template": " 1001 ", "content": "", "options": {}},
        {"template": "", "content": None, "options": {}},
        {"template": "1001", "content": "text", "options": {}},
        {"template": "1001", "content": None, "options": {"playTimes": "9"}},
        {"template": "1001", "content": None, "options": {"speed": 1}},
    ],
    "apispace-voice": [
        {"template": "123", "content": None, "options": {"allowedCallTime": "09:00-18:00"}},
        {"template": "abc", "content": None, "options": {}},
        {"template": "123", "content": None, "options": {"isNotifyFileId": "maybe"}},
    ],
}


def outcome(provider: Provider, shared: dict[str, Any], to: str, params: tuple[str, ...]) -> Any:
    try:
        valid = provider.validate(Draft(provider.name, to, params=params, **shared))
    except InvalidRequest as exc:
        return ("refused", exc.errors[0].field, exc.errors[0].message)
    return (valid.to, valid.content, valid.params)


def checked(check: Any, to: str, params: tuple[str, ...]) -> Any:
    try:
        return check(to, params)
    except InvalidRequest as exc:
        return ("refused", exc.errors[0].field, exc.errors[0].message)


@pytest.mark.parametrize("name", sorted(SHARED))
@settings(max_examples=400, deadline=None)
@given(to=NUMBERS, params=PARAMS, which=st.integers(0, 5))
def test_a_row_check_agrees_with_validate(
    name: str, to: str, params: tuple[str, ...], which: int
) -> None:
    provider = PROVIDERS[name]
    shared = SHARED[name][which % len(SHARED[name])]
    check = provider.row_check(**shared)
    try:
        provider.validate(Draft(name, "13800138000", **shared))
    except InvalidRequest:
        assert check is None  # refused shared fields: every row takes validate
        return
    assert check is not None
    assert checked(check, to, params) == outcome(provider, shared, to, params)


@pytest.mark.parametrize("name", ["ihuyi", "itniotech", "apispace-sms"])
def test_providers_without_a_row_check_leave_each_row_to_validate(name: str) -> None:
    assert PROVIDERS[name].row_check("1001", "text", {}) is None


ROWS = st.lists(
    st.tuples(
        st.one_of(NUMBERS, st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)),
        st.one_of(PARAMS, st.just(("张三", "1.00"))),
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("name", sorted(SHARED))
@settings(max_examples=400, deadline=None)
@given(rows=ROWS)
def test_a_chunk_passes_whole_only_where_each_row_passes(
    name: str, rows: list[tuple[str, tuple[str, ...]]]
) -> None:
    """``many`` gives each row's number as the row check does, or None where any row is
    refused or is not eleven bare digits starting with 1 (the import then checks each
    row on its own)."""
    check = PROVIDERS[name].row_check(**SHARED[name][0])
    assert check is not None
    tos = check.many([to for to, _ in rows], [params for _, params in rows])
    each = [checked(check, to, params) for to, params in rows]
    if tos is not None:
        assert [
            (to, check.content, params) for to, (_, params) in zip(tos, rows, strict=True)
        ] == each
    else:
        assert any(answer[0] == "refused" for answer in each) or any(
            len(to) != 11 or not to.isdigit() or to[0] != "1" for to, _ in rows
        )


def test_a_chunk_of_usual_rows_passes_whole() -> None:
    check = PROVIDERS["jumdata"].row_check(**SHARED["jumdata"][0])
    assert check is not None
    rows = [("13800138000", ("张三", "1.00")), ("15912345678", ("李四", "2.00"))]
    assert check.many([r[0] for r in rows], [r[1] for r in rows]) == [
        "+8613800138000",
        "+8615912345678",
    ]
    assert check.many(["13800138000", "10012345678"], [(), ()]) is None  # no such number
    assert check.many(["13800138000"], [("a,b",)]) is None  # a separator in a variable
    assert check.many(["13800138000"], [("",)]) is None  # an empty variable
