"""What the seeds say, written down again for the emulators — from the seeds' own text,
never from the clients (``providers/*.py``).

The sandbox is a second opinion: if it imported a client's signing, number or parsing
function, a bug there would pass its own sandbox. So every formula here is the seed's
sentence turned into code (the sentence is quoted beside it), and a test
(``tests/providers/test_sandbox_independence.py``) checks that nothing under
``sandbox/`` imports a client module.
"""

from __future__ import annotations

import hashlib

import phonenumbers
from phonenumbers import PhoneNumberType
from starlette.responses import Response


def md5_hex(*parts: object) -> str:
    """``md5`` of the parts joined with nothing between them, lowercase hex."""
    text = "".join(str(part) for part in parts)
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - the seeds' scheme


def sha256_hex(*parts: object) -> str:
    """``sha256`` of the parts joined with nothing between them, lowercase hex."""
    return hashlib.sha256("".join(str(part) for part in parts).encode("utf-8")).hexdigest()


# -- mainland numbers (ihuyi 2.3: "手机号:11位 … 固话号码:{区号}{号码},示例:02151****29") ------


def mainland_mobile(number: str) -> bool:
    """ "手机号:11位": eleven digits, a mobile's leading 1."""
    return number.isascii() and number.isdigit() and len(number) == 11 and number[0] == "1"


def mainland_landline(number: str) -> bool:
    """ "固话号码:{区号}{号码}": the area code with its leading 0, then the number — and
    the area code a real one (libphonenumber's table of Chinese fixed lines)."""
    if not (number.isascii() and number.isdigit() and number.startswith("0")):
        return False
    try:
        parsed = phonenumbers.parse(number, "CN")
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(parsed) and phonenumbers.number_type(parsed) in (
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )


def mainland_number(number: str) -> bool:
    return mainland_mobile(number) or mainland_landline(number)


def international_callee(number: str) -> bool:
    """itniotech: "每个手机号为:国码+手机号组成的7-15位数字" (country code + number,
    7–15 digits). Nothing more: the seed's own example, 91856321412, is one."""
    return number.isascii() and number.isdigit() and 7 <= len(number) <= 15


# -- answers ------------------------------------------------------------------------------


def error_page(status: int) -> Response:
    """The HTML page a gateway answers with, not any provider's documented body."""
    return Response(
        f"<html><body>{status} error</body></html>", status_code=status, media_type="text/html"
    )


#: a fault the sandbox injects: "fail" is refused before anything is placed (HTTP 503:
#: the server says it did not handle the request); "error" is an HTTP 500 *after* the
#: call was placed; "timeout" places it and holds the answer past the client's patience
NOT_PLACED, AFTER_PLACING = 503, 500
