"""The fast path for mainland mobiles must agree with libphonenumber, number for number."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.base import MOBILE_TYPES, check_number, mask
from providers.numbers import fast_cn_mobile, fast_cn_mobiles, mainland


def full_parse(raw: str) -> tuple[str | None, phonenumbers.PhoneNumberType | None]:
    text = raw if not raw.startswith("86") else "+" + raw
    try:
        number = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return None, None
    if not phonenumbers.is_valid_number(number):
        return None, None
    return phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.E164
    ), phonenumbers.number_type(number)


@settings(max_examples=3000, deadline=None)
@given(
    st.from_regex(r"1[0-9]{10}", fullmatch=True), st.sampled_from(["", "+86", "86", "0086", "+86 "])
)
def test_the_fast_path_agrees_with_libphonenumber(national: str, prefix: str) -> None:
    raw = prefix + national
    fast = fast_cn_mobile(raw)
    assert fast is not None
    expected_number, expected_type = full_parse(
        prefix.strip().replace("0086", "+86") + national if prefix else national
    )
    number, kind = fast
    assert kind == expected_type
    if kind is not None:
        assert number == expected_number


@pytest.mark.parametrize("raw", ["(138) 0013 8000", "+1 415 555 0100", "021-5123-4529", "", "abc"])
def test_other_spellings_take_the_full_parser(raw: str) -> None:
    assert fast_cn_mobile(raw) is None


def test_a_number_the_prefix_table_calls_invalid_is_refused_naming_to() -> None:
    to, errors = check_number("10012345678", kinds=MOBILE_TYPES, what="a mainland mobile")
    assert to is None and errors[0].field == "to"


def test_masking_keeps_three_and_four_digits() -> None:
    assert mask("+8613800138000") == "138****8000"


# -- a landline goes out as 0 + area code + number -------------------------------------------------


@pytest.mark.parametrize(
    ("e164", "dialled"),
    [
        ("+861065529988", "01065529988"),  # Beijing: area code 10, starts with 1
        ("+862151234529", "02151234529"),  # the seed's shape: 02151****29
        ("+8675512345678", "075512345678"),
        ("+8613800138000", "13800138000"),
        ("+8617012345678", "17012345678"),
    ],
)
def test_a_mainland_number_is_dialled_by_its_type_not_its_first_digit(
    e164: str, dialled: str
) -> None:
    assert mainland(e164) == dialled


@settings(max_examples=300, deadline=None)
@given(st.lists(st.from_regex(r"1[0-9]{10}", fullmatch=True), min_size=1, max_size=8))
def test_a_chunk_of_bare_numbers_agrees_with_each_number(raws: list[str]) -> None:
    """``fast_cn_mobiles`` gives every number's E.164 where each is a mobile by the
    prefix table, and None where any is not."""
    each = [fast_cn_mobile(raw) for raw in raws]
    together = fast_cn_mobiles(raws, MOBILE_TYPES)
    if all(kind in MOBILE_TYPES for _, kind in filter(None, each)) and None not in each:
        assert together == [number for number, _ in filter(None, each)]
    else:
        assert together is None
    assert fast_cn_mobiles([*raws, "+86 138 0013 8000"], MOBILE_TYPES) is None  # spelt otherwise
