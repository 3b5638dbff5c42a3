"""Phone numbers: parsing any usual spelling, E.164, the mainland form, masking.

Every way in validates numbers, and a campaign validates a million of them, so the
common case — a mainland mobile, spelt with or without +86 and separators — has a fast
path: libphonenumber decides a Chinese mobile number's validity and type by its leading
digits (its CN patterns look at no more than the first five), so the answer is looked
up once per 7-digit prefix and cached. Anything else takes the full parse. A test
compares the two paths over random numbers (tests/providers/test_numbers.py).
"""

from __future__ import annotations

import re
from functools import lru_cache
from operator import itemgetter

import phonenumbers
from phonenumbers import PhoneNumberType

#: number types as ``phonenumbers.number_type`` gives them (its ``PhoneNumberType`` values)
NumberType = int

MOBILE_TYPES: set[NumberType] = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
LANDLINE_TYPES: set[NumberType] = {PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def parse_number(raw: str, region: str = "CN") -> phonenumbers.PhoneNumber | None:
    """Any common spelling (``13800138000``, ``+86 138 0013 8000``, ``8613800138000``)."""
    text = (raw or "").strip()
    if not text or len(text) > 32:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    # "8613800138000": a country code written without "+"
    if (
        region == "CN"
        and not text.startswith("+")
        and digits.startswith("86")
        and len(digits) == 13
    ):
        text = "+" + digits
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mainland(e164_number: str) -> str:
    """A mainland China number as dialled at home: the 11-digit mobile, or for a landline
    0 + area code + number (ihuyi's seed: 固话号码:{区号}{号码}, e.g. 02151****29).

    Decided by the number's *type*, not its first digit: Beijing's area code is 10, so
    +86 10 6552 9988 is a landline that starts with 1, and sent without its 0 it is no
    number at all (ihuyi answers 406; an APISpace batch holding it fails whole). A
    mobile's type comes from the cached prefix table (the fast path), anything else
    from the full parse."""
    national = e164_number.removeprefix("+86")
    if (
        len(national) == 11
        and national.startswith("1")
        and _cn_prefix(national[:7]) in MOBILE_TYPES
    ):
        return national
    number = parse_number(e164_number)
    if number is not None and phonenumbers.number_type(number) in MOBILE_TYPES:
        return national
    return "0" + national


def mask(number: str | None) -> str:
    """``+8613800138000`` → ``138****8000``: enough to recognise, not enough to call."""
    if not number:
        return ""
    digits = number.lstrip("+")
    if number.startswith("+86"):
        digits = digits[2:]
    if len(digits) <= 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


_SEPARATORS = re.compile(r"[\s\-]")
_CN_MOBILE = re.compile(r"(?:\+86|0086|86)?(1\d{10})")


@lru_cache(maxsize=65536)
def _cn_prefix(prefix: str) -> NumberType | None:
    """The type libphonenumber gives every 11-digit number with this 7-digit prefix
    (None: not a valid number)."""
    try:
        number = phonenumbers.parse(prefix + "0000", "CN")
    except phonenumbers.NumberParseException:  # e.g. 110…: a service code, not a number
        return None
    return phonenumbers.number_type(number) if phonenumbers.is_valid_number(number) else None


def fast_cn_mobile(raw: str) -> tuple[str, NumberType | None] | None:
    """(E.164, type) for a mainland number starting with 1, spelt simply; None when the
    spelling needs the full parser.

    The shape a list almost always holds, eleven bare digits, is read without the
    regular expressions (a campaign checks a million numbers)."""
    if raw and len(raw) == 11 and raw[0] == "1" and raw.isascii() and raw.isdigit():
        return "+86" + raw, _cn_prefix(raw[:7])
    match = _CN_MOBILE.fullmatch(_SEPARATORS.sub("", raw or ""))
    if match is None:
        return None
    national = match.group(1)
    return "+86" + national, _cn_prefix(national[:7])


_PREFIX = itemgetter(slice(0, 7))


def fast_cn_mobiles(raws: list[str], kinds: set[NumberType] | None) -> list[str] | None:
    """Every number in E.164, where each is eleven bare digits starting with 1 whose
    type is one of ``kinds`` (None: any valid number); None where any is not, to be
    read on its own (:func:`fast_cn_mobile`, then the full parse).

    A chunk of a list at once: its lengths, its digits and its distinct 7-digit
    prefixes are looked at in a few passes that run in C, not a call per number."""
    if not raws or set(map(len, raws)) != {11}:
        return None
    digits = "".join(raws)
    if not (digits.isascii() and digits.isdigit()):
        return None
    for prefix in set(map(_PREFIX, raws)):
        kind = _cn_prefix(prefix) if prefix[0] == "1" else None
        if kind is None or (kinds is not None and kind not in kinds):
            return None
    return ["+86" + raw for raw in raws]
