"""itniotech international file-voice group call: ``sendGroup``
(document ``itniotech-voice-send-group.txt``,
summarised in docs/providers.md).

Wire: ``POST {base}/voice/sendGroup``, ``Content-Type: application/json;charset=UTF-8``,
headers ``Api-Key``, ``Timestamp`` (Unix *seconds*) and
``Sign = md5(apiKey + apiSecret + timestamp)`` (hex). A stale time stamp is refused
(``-16``), so the request is signed at the moment of sending and ``-16`` is transient:
the retry signs afresh. ``-22`` (parameter error) refuses the whole group and calls
no one: a group refused with it is split (``tasks/calls.py``) until the offending
callee(s) are alone; those fail, the rest are called. ``-18`` (system error) arrives
after the request reached the provider, which may have dialled some callees: ambiguous.

Body: ``callee`` (up to 1000 numbers joined by ``,``, each country code + number,
7–15 digits), ``displayNum``, ``fileId`` (an uploaded audio
file: the notification's ``template``), ``appId`` (a setting), ``maxDuration``
(1–120 s), ``maxRingingTime`` (20–120 s), ``loopCount`` (1–9), ``calledInfo``
(0–1000 characters).

The answer: ``status`` (``"0"`` ok), ``reason``, and ``data`` with one entry per
callee — ``voiceId``, ``callee``, ``terminationCode`` (``"0"`` ok), ``terminationReason``
— so one request can succeed for some callees and fail for others.

Assumptions (the seed leaves these open; decided here, once):

- ASSUMED: a callee with a ``terminationCode`` other than ``"0"`` was refused by the
  provider (an unsupported or invalid destination): PERMANENT for that notification,
  with the termination code as its code. A callee an accepted request does not list is
  AMBIGUOUS (the call may have been placed), never resent on a guess.
- ASSUMED: ``-26`` (rate lookup failed) is transient: retried within the attempt cap,
  so a destination that is never priced ends ``failed`` after the cap.
- ASSUMED: ``-2`` (IP limit) is account-wide.
- ASSUMED: ``fileId`` is at most 128 characters; ``displayNum`` is 7–15 digits.
- A callee is what the seed says it is: country code + number, 7–15 digits. One that
  libphonenumber knows is normalised by it; one it does not (the seed's own example
  ``91856321412`` is too short for an Indian mobile by libphonenumber's tables) is
  taken as written when its leading digits are a country code, and sent as digits
  without ``+`` — unless it is a mainland mobile written without 86 (``138…``), which
  would otherwise pass as a +1 number.
- ASSUMED (the seed documents no receipt; decided here, once): the platform pushes each
  call's result to a URL bound in its console, ours being
  ``/callbacks/{token}/itniotech``: ``POST``, ``application/json``, one object
  ``{"voiceId", "callee", "status", "reason", "duration", "endTime"}`` (a JSON array of
  them is read too). ``status`` ``"0"`` is answered (delivered); any other code is
  undelivered, kept as the receipt's code. It expects the plain body ``success`` and
  repeats a push up to 3 times, as ihuyi does. The ``voiceId`` is the one the send
  answered for that callee, so it is the reference; ``callee`` is not needed to match
  and is not kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import phonenumbers
from pydantic import Field, SecretStr

from providers.base import (
    Call,
    CodeRule,
    DeliveryReceipt,
    Draft,
    FieldError,
    InvalidRequest,
    Message,
    MissingCredentials,
    Outcome,
    Provider,
    Reply,
    SendResult,
    UnreadableReply,
    Valid,
    check_number,
    int_option,
    json_answer,
    pair_by_number,
    pushed_entries,
    required_text,
    results_for,
    rule_for,
    unknown_options,
)
from providers.settings import ProviderSettings

PATH = "/voice/sendGroup"
MAX_BATCH = 1000
MAX_FILE_ID = 128
MAX_CALLED_INFO = 1000
NUMBER_DIGITS = (7, 15)
#: a mainland China mobile written without its country code: the usual slip, which
#: would otherwise read as a (non-existent) +1 number
MAINLAND_MOBILE = re.compile(r"1[3-9]\d{9}")
#: a pushed call result's ``status`` that means the call was answered
ANSWERED = "0"
MAX_VOICE_ID = 64

CODES: dict[str, CodeRule] = {
    "0": CodeRule(Outcome.ACCEPTED, "success"),
    "-1": CodeRule(Outcome.ACCOUNT, "账号认证异常"),
    "-2": CodeRule(Outcome.ACCOUNT, "ip限制"),
    "-10": CodeRule(Outcome.ACCOUNT, "余额不足"),
    "-16": CodeRule(Outcome.TRANSIENT, "时间戳过期"),
    "-18": CodeRule(Outcome.AMBIGUOUS, "系统异常"),
    "-22": CodeRule(Outcome.PERMANENT, "参数异常", splits=True),
    "-26": CodeRule(Outcome.TRANSIENT, "获取费率失败"),
}

#: (option, low, high): the seed's ranges
INT_OPTIONS = (("maxDuration", 1, 120), ("maxRingingTime", 20, 120), ("loopCount", 1, 9))


def sign(api_key: str, api_secret: str, timestamp_s: int | str) -> str:
    digest = hashlib.md5(f"{api_key}{api_secret}{timestamp_s}".encode())  # noqa: S324
    return digest.hexdigest()  # the provider's scheme


def wire(e164_number: str) -> str:
    """``+919876543210`` → ``919876543210``: country code and number, digits only."""
    return e164_number.lstrip("+")


def international(raw: str) -> str:
    """The seed writes numbers as country code + number without ``+``; ``00`` is the
    usual international prefix. Both become ``+…`` so any country parses."""
    text = (raw or "").strip()
    if text.startswith("+"):
        return text
    digits = "".join(ch for ch in text if ch.isdigit())
    return "+" + digits.removeprefix("00")


class ItniotechSettings(ProviderSettings):
    """itniotech's settings (``NOTIFYQ_ITNIOTECH_*``): no caps of its own by default,
    and a window that may be read on the recipient's clock."""

    credentials = ("api_key", "api_secret", "app_id")

    api_key: SecretStr | None = Field(None, alias="itniotech_api_key")
    api_secret: SecretStr | None = Field(None, alias="itniotech_api_secret")
    app_id: str | None = Field(None, alias="itniotech_app_id")
    base_url: str = Field("https://api.itniotech.com", alias="itniotech_base_url")
    caps: str = Field("", alias="itniotech_caps")
    window: str = Field("", alias="itniotech_window")
    rate: str = Field("", alias="itniotech_rate")
    local_time: bool = Field(False, alias="itniotech_local_time")
    callback_token: SecretStr | None = Field(None, alias="itniotech_callback_token")


class Itniotech(Provider):
    name = "itniotech"
    max_batch = MAX_BATCH

    def __init__(
        self,
        api_key: SecretStr | None,
        api_secret: SecretStr | None,
        app_id: str | None,
        base_url: str,
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.app_id = app_id
        self.base_url = base_url.rstrip("/")

    def _credentials(self) -> tuple[str, str, str]:
        if self.api_key is None:
            raise MissingCredentials(self.name, "NOTIFYQ_ITNIOTECH_API_KEY")
        if self.api_secret is None:
            raise MissingCredentials(self.name, "NOTIFYQ_ITNIOTECH_API_SECRET")
        if not self.app_id:
            raise MissingCredentials(self.name, "NOTIFYQ_ITNIOTECH_APP_ID")
        return self.api_key.get_secret_value(), self.api_secret.get_secret_value(), self.app_id

    def validate(self, draft: Draft) -> Valid:
        to, errors = callee(draft.to)
        file_id = (draft.template or "").strip()
        if not file_id:
            errors.append(FieldError("template", "required: the uploaded audio file's id"))
        elif len(file_id) > MAX_FILE_ID:
            errors.append(FieldError("template", f"at most {MAX_FILE_ID} characters"))
        if draft.content:
            errors.append(FieldError("content", "itniotech plays an audio file, not text"))
        if draft.params:
            errors.append(FieldError("params", "itniotech plays an audio file: no variables"))
        options = call_options(draft.options, errors)
        if errors:
            raise InvalidRequest(errors)
        assert to is not None
        return Valid(to=to, template=file_id, content=None, params=(), options=options)

    def build_send(self, messages: Sequence[Message], now: float) -> Call:
        api_key, api_secret, app_id = self._credentials()
        first = messages[0]
        stamp = int(now)
        body: dict[str, Any] = {
            "callee": ",".join(wire(m.to) for m in messages),
            "fileId": first.template or "",
            "appId": app_id,
            **first.options,
        }
        return Call(
            "POST",
            f"{self.base_url}{PATH}",
            headers={
                "Content-Type": "application/json;charset=UTF-8",
                "Api-Key": api_key,
                "Timestamp": str(stamp),
                "Sign": sign(api_key, api_secret, stamp),
            },
            json=body,
        )

    def parse_send(self, messages: Sequence[Message], reply: Reply) -> list[SendResult]:
        answer = json_answer(reply, "status")
        code = str(answer["status"])
        rule = rule_for(CODES, code)
        reason = str(answer.get("reason") or rule.meaning)
        if rule.outcome is not Outcome.ACCEPTED:
            return results_for(messages, rule, code, reason)
        data = answer.get("data")
        if not isinstance(data, list):
            raise UnreadableReply("an accepted answer without a data list")
        paired = pair_by_number(
            messages, data, entry_number=lambda entry: str(entry["callee"]), region="ZZ"
        )
        return [callee_result(m, entry) for m, entry in zip(messages, paired, strict=True)]

    @staticmethod
    def parse_receipts(body: Any) -> list[DeliveryReceipt]:
        """The pushed call results (ASSUMED shape: see the module docstring); KeyError/
        ValueError/TypeError when the body or any result in it is not one — a push is
        taken whole or refused whole."""
        return [call_receipt(entry) for entry in pushed_entries(body)]


def callee(raw: str) -> tuple[str | None, list[FieldError]]:
    """The callee in E.164, or why not. The seed's rule is the test: country code +
    number, 7–15 digits; libphonenumber normalises what it knows, and a number it calls
    invalid (its tables are stricter than the provider: the seed's own ``91856321412``)
    is still taken when its country code is a real one."""
    written = international(raw)
    to, errors = check_number(
        written, kinds=None, region="ZZ", country=None, what="country code + number"
    )
    if to is None:
        digits = written.removeprefix("+")
        if MAINLAND_MOBILE.fullmatch(digits):  # 138… with no 86: not a +1 number
            return None, [FieldError("to", "a mainland mobile needs its country code, 86")]
        if digits.isdigit() and _country_code(digits):
            to, errors = "+" + digits, []
    if to is not None and not NUMBER_DIGITS[0] <= len(wire(to)) <= NUMBER_DIGITS[1]:
        return None, [FieldError("to", "must be 7 to 15 digits with the country code")]
    if to is None:
        return None, [FieldError("to", "must be country code + number, e.g. +919876543210")]
    return to, errors


def _country_code(digits: str) -> int:
    """The country calling code a string of digits starts with (0: none)."""
    for length in (1, 2, 3):
        if phonenumbers.region_code_for_country_code(int(digits[:length] or 0)) != "ZZ":
            return int(digits[:length])
    return 0


def call_options(options: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    """The call options in their wire types (ints, and strings for the rest)."""
    unknown_options(
        options, {name for name, _, _ in INT_OPTIONS} | {"displayNum", "calledInfo"}, errors
    )
    out: dict[str, Any] = {}
    for name, low, high in INT_OPTIONS:
        value = int_option(options, name, low, high, errors)
        if value is not None:
            out[name] = value
    display = str(options.get("displayNum") or "").strip()
    if display:
        if not display.isdigit() or not NUMBER_DIGITS[0] <= len(display) <= NUMBER_DIGITS[1]:
            errors.append(FieldError("options.displayNum", "must be 7 to 15 digits"))
        else:
            out["displayNum"] = display
    info = options.get("calledInfo")
    if info not in (None, ""):
        if len(str(info)) > MAX_CALLED_INFO:
            errors.append(FieldError("options.calledInfo", f"at most {MAX_CALLED_INFO} characters"))
        else:
            out["calledInfo"] = str(info)
    return out


def callee_result(message: Message, entry: Mapping[str, Any] | None) -> SendResult:
    if entry is None:
        return SendResult(
            message.id, Outcome.AMBIGUOUS, "0", "accepted request did not list this callee"
        )
    code = str(entry.get("terminationCode", ""))
    reason = str(entry.get("terminationReason") or "")
    if code != "0":
        return SendResult(message.id, Outcome.PERMANENT, code, reason or "callee refused")
    ref = entry.get("voiceId")
    if not ref:
        return SendResult(message.id, Outcome.AMBIGUOUS, code, "listed without a voiceId")
    return SendResult(message.id, Outcome.ACCEPTED, code, reason or "success", str(ref))


def call_receipt(entry: Mapping[str, Any]) -> DeliveryReceipt:
    """One pushed call result; KeyError/ValueError/TypeError when it is not one."""
    ref = required_text(entry, "voiceId", MAX_VOICE_ID)
    status = required_text(entry, "status", 32)
    duration = str(entry.get("duration") or "0").strip()
    # checked, not int()'d: int()'s own message would echo the value
    if not (duration.isascii() and duration.isdigit()):
        raise ValueError("duration is not whole seconds")
    seconds = int(duration)
    return DeliveryReceipt(
        ref=ref,
        delivered=status == ANSWERED,
        code=status,
        message=str(entry.get("reason") or "")[:255],
        detail={"duration": seconds, "endTime": str(entry.get("endTime") or "")[:32]},
    )
