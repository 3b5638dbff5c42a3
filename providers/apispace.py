"""APISpace (Eolink): voice notification, batch voice notification, the voice report pull
(document ``apispace-voice-notify.md``), and SMS verification codes (document
``apispace-sms-code.md``; both summarised in docs/providers.md). Two providers, one
account: ``apispace-voice`` and ``apispace-sms`` share the auth headers, the code table
and the answer format here.

Wire: every call carries ``X-APISpace-Token: <token>`` and ``Authorization-Type: apikey``.

- voice, one number: ``POST {base}/notify-vocie/voice-notify`` (sic, ``vocie``), form
  ``mobile, templateId, param, allowedCallTime, transData, isNotifyFileId``;
- voice, many numbers: ``POST {base}/notify-vocie/voice-notify-batch``, the same form
  with ``mobile`` holding the numbers joined by ``,`` — used when more than one message
  shares a :meth:`~providers.base.Provider.batch_key`;
- SMS: ``POST {base}/sms-code/verifycode``, JSON ``msg, params, sendtime, extend, uid``
  where ``params`` is ``"mobile,value;mobile,value"``: one request, many numbers, each
  with its own code, so the SMS batch key ignores the per-number value;
- reports: ``GET {report_base}/api/voice/report?count=N``. Pull-and-delete: what one
  pull returns is gone from the server, so the caller journals the raw body before it
  parses it (``tasks/reports.py``) and never repeats a pull on a read failure.

Codes (both products): ``000`` success, ``001`` parameter error, ``002`` balance,
``003`` IP not whitelisted, ``500`` unknown error (every outcome: ``docs/codes.md``).
Reports answer ``"0"`` on success in the seed's example and ``"000"`` in its code
table: both are read as success.

``001`` refuses the whole request and places nothing, so a *batch* refused with it is
split (``tasks/calls.py``) until the bad number(s) are alone: those fail, the rest go.

Assumptions (the seeds leave these open; decided here, once):

- ASSUMED: answers are JSON ``{"code": "000", "desc": "...", ...}``; a voice send
  carries ``callId`` at the top; a batch carries ``data: [{"mobile", "callId"}]``, and
  an entry may hold its own ``code``. A number an accepted batch does not list is
  AMBIGUOUS (the call may have been placed): never resent on a guess.
- ASSUMED: the batch URL is ``/notify-vocie/voice-notify-batch`` with at most 1000
  numbers; the SMS endpoint takes at most 1000 numbers a request too.
- ASSUMED: ``500`` ("未知异常", an unknown error) is ambiguous: the request arrived
  and the provider cannot say what became of it, so the call may have been placed and
  it is never placed again blind. So is an HTTP 500 after the request was sent.
- ASSUMED: voice calls a mainland mobile *or landline* — the seed's own example is a
  call "to the merchant's mobile or landline" — sent as ihuyi does (11-digit mobile,
  or ``0`` + area code + number). SMS goes to mainland mobiles only.
- ASSUMED: ``templateId`` is numeric (the seed's example is a number); ``param`` joins
  the variables with ``,``, so a variable may not hold one.
- ASSUMED: ``allowedCallTime`` is ``HH:MM-HH:MM``; ``transData`` is at most 256
  characters; ``isNotifyFileId`` is ``true`` or ``false`` (1/0, yes/no accepted).
- ASSUMED: the SMS answer has no per-number result, only ``data.msgId`` — one for the
  whole request. The seed documents ``000`` as success and no answer body, so an
  accepted answer without a ``msgId`` is still *accepted*: the SMS is ``sent`` with no
  reference, no receipt can match it, and the row ends as ``sent`` rows without a
  receipt do.
- ASSUMED (the seed documents no SMS receipt; decided here, once): the platform pushes
  delivery reports to a URL bound in its console, ours being
  ``/callbacks/{token}/apispace-sms``: ``POST``, ``application/json``, a JSON array (or
  one object) of reports ``{"msgId", "mobile", "status", "desc", "reportTime"}`` with
  SMPP-style ``status`` values — ``DELIVRD`` is delivered, anything else (``UNDELIV``,
  ``EXPIRED``, ``REJECTD``, ``MK:xxxx``…) undelivered — and it expects the plain body
  ``success``, repeating a push up to 3 times as ihuyi does.
- Because one ``msgId`` covers every number of a request but reports come one per
  number, each message's reference is :func:`sms_ref` of the ``msgId`` and its number,
  built the same way by :meth:`ApispaceSms.parse_send` and
  :meth:`ApispaceSms.parse_receipts`. The number enters the reference only as a digest:
  references are shown by ``notifyq status`` and the API, where numbers are masked.
- ASSUMED: SMS ``msg`` is at most 500 characters; the code value at most 32 and free
  of ``,`` and ``;`` (the separators of ``params``); ``sendtime`` is never used (a
  later send is ``not_before``, so our caps and states stay true); ``extend`` and
  ``uid`` are passed through as options of at most 64 characters.
- A report is *delivered* iff its ``voiceCode`` is ``"1000"`` (played successfully).
  A report entry we cannot read is skipped and counted; the page stays in the journal.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from pydantic import Field, SecretStr

from providers.base import (
    LANDLINE_TYPES,
    MOBILE_TYPES,
    Call,
    CodeLeg,
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
    ReportPage,
    RowFields,
    SendResult,
    UnreadableReply,
    Valid,
    check_number,
    e164,
    joinable_params,
    json_answer,
    mainland,
    pair_by_number,
    parse_number,
    pushed_entries,
    required_text,
    results_for,
    rule_for,
    unknown_options,
)
from providers.settings import DEFAULT_NUMBER_CAPS, ProviderSettings

VOICE_PATH = "/notify-vocie/voice-notify"
BATCH_PATH = "/notify-vocie/voice-notify-batch"
SMS_PATH = "/sms-code/verifycode"
REPORT_PATH = "/api/voice/report"
MAX_BATCH = 1000
DEFAULT_REPORT_COUNT = 10
DELIVERED_VOICE_CODE = "1000"

CODES: dict[str, CodeRule] = {
    "000": CodeRule(Outcome.ACCEPTED, "成功"),
    "001": CodeRule(Outcome.PERMANENT, "参数校验错误", splits=True),
    "002": CodeRule(Outcome.ACCOUNT, "余额不足"),
    "003": CodeRule(Outcome.ACCOUNT, "不在IP白名单"),
    "500": CodeRule(Outcome.AMBIGUOUS, "未知异常"),
}
#: a report pull's success: the seed's example says "0", its code table "000"
REPORT_OK = frozenset({"0", "000"})

MAX_TRANS_DATA = 256
MAX_TEMPLATE_DIGITS = 32
WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}

MAX_MSG = 500
MAX_CODE_VALUE = 32
MAX_PASSTHROUGH = 64
PLACEHOLDER = "{$var}"
SIGNATURE = re.compile(r"^【([^【】]*)】")
SIGNATURE_FORBIDDEN = set("-+*&%#@~")
LINK = re.compile(r"(?:https?://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.IGNORECASE)
SINGLE_SEGMENT, SEGMENT = 70, 67

#: the SMPP ``stat`` of a delivered SMS; every other status is undelivered
SMS_DELIVERED = "DELIVRD"
#: the ledger's column for a provider reference (``notifications.provider_ref``)
MAX_REF = 64
MAX_MSG_ID = 128
NUMBER_DIGEST = 16


def auth_headers(token: str) -> dict[str, str]:
    return {"X-APISpace-Token": token, "Authorization-Type": "apikey"}


def segments(text: str) -> int:
    """SMS segments billed for one recipient: up to 70 characters is one; longer texts
    go in parts of 67 (3 characters of each part carry the joining header)."""
    length = len(text)
    return 1 if length <= SINGLE_SEGMENT else math.ceil(length / SEGMENT)


def cost(recipients: int, text: str) -> int:
    """Units one SMS request is charged: recipients times segments."""
    return recipients * segments(text)


def filled(msg: str, value: str) -> str:
    """The text a recipient reads (and is billed for): the code put in its place."""
    return msg.replace(PLACEHOLDER, value)


def read_code(reply: Reply) -> tuple[str, CodeRule, dict[str, Any]]:
    answer = json_answer(reply, "code")
    code = str(answer["code"])
    return code, rule_for(CODES, code), answer


def describe(answer: Mapping[str, Any], rule: CodeRule) -> str:
    return str(answer.get("desc") or answer.get("msg") or rule.meaning)


class ApispaceSettings(ProviderSettings):
    """What both APISpace products are configured with: one token, one API address."""

    credentials = ("token",)

    token: SecretStr | None = Field(None, alias="apispace_token")
    base_url: str = Field("https://eolink.o.apispace.com", alias="apispace_base_url")


class ApispaceVoiceSettings(ApispaceSettings):
    """APISpace voice (``NOTIFYQ_APISPACE_VOICE_*``), and where its reports are pulled."""

    report_base_url: str = Field("https://cb.o.apispace.com", alias="apispace_report_base_url")
    caps: str = Field(DEFAULT_NUMBER_CAPS, alias="apispace_voice_caps")
    window: str = Field("", alias="apispace_voice_window")
    rate: str = Field("", alias="apispace_voice_rate")


class ApispaceSmsSettings(ApispaceSettings):
    """APISpace SMS (``NOTIFYQ_APISPACE_SMS_*``): its documented 800 requests a second."""

    caps: str = Field(DEFAULT_NUMBER_CAPS, alias="apispace_sms_caps")
    window: str = Field("", alias="apispace_sms_window")
    rate: str = Field("800/second", alias="apispace_sms_rate")
    callback_token: SecretStr | None = Field(None, alias="apispace_sms_callback_token")


class Apispace(Provider):
    """What both APISpace products share: the token, the base URL, the headers."""

    max_batch = MAX_BATCH

    def __init__(self, token: SecretStr | None, base_url: str) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")

    def _headers(self) -> dict[str, str]:
        if self.token is None:
            raise MissingCredentials(self.name, "NOTIFYQ_APISPACE_TOKEN")
        return auth_headers(self.token.get_secret_value())


# -- voice ------------------------------------------------------------------------------


def voice_options(options: Mapping[str, Any], errors: list[FieldError]) -> dict[str, str]:
    """The voice options, checked and in their wire spelling."""
    unknown_options(options, {"allowedCallTime", "transData", "isNotifyFileId"}, errors)
    out: dict[str, str] = {}
    window = str(options.get("allowedCallTime") or "").strip()
    if window:
        match = WINDOW.match(window.replace(" ", ""))
        if match is None or (match[3] == "24" and match[4] != "00"):
            errors.append(FieldError("options.allowedCallTime", "must be HH:MM-HH:MM"))
        elif match.group(1, 2) == match.group(3, 4):
            errors.append(FieldError("options.allowedCallTime", "opens and closes at once"))
        else:
            out["allowedCallTime"] = match[0]
    trans = options.get("transData")
    if trans not in (None, ""):
        if len(str(trans)) > MAX_TRANS_DATA:
            errors.append(FieldError("options.transData", f"at most {MAX_TRANS_DATA} characters"))
        else:
            out["transData"] = str(trans)
    flag = str(options.get("isNotifyFileId", "")).strip().lower()
    if flag:
        if flag not in TRUE | FALSE:
            errors.append(FieldError("options.isNotifyFileId", "must be true or false"))
        else:
            out["isNotifyFileId"] = "true" if flag in TRUE else "false"
    return out


#: a voice row's own fields: a mobile or landline, variables joined by commas on the wire
VOICE_ROW = RowFields(
    MOBILE_TYPES | LANDLINE_TYPES, "a mainland China mobile or landline with area code", ","
)


class ApispaceVoice(Apispace):
    name = "apispace-voice"
    pulls_reports = True
    row_fields = VOICE_ROW

    def __init__(self, token: SecretStr | None, base_url: str, report_base_url: str) -> None:
        super().__init__(token, base_url)
        self.report_base_url = report_base_url.rstrip("/")

    def validate(self, draft: Draft) -> Valid:
        to, errors = check_number(draft.to, kinds=VOICE_ROW.kinds, what=VOICE_ROW.what)
        template = (draft.template or "").strip()
        if not template:
            errors.append(FieldError("template", "required: the APISpace voice template id"))
        elif not template.isdigit() or len(template) > MAX_TEMPLATE_DIGITS:
            errors.append(FieldError("template", "must be the numeric APISpace template id"))
        if draft.content:
            errors.append(
                FieldError("content", "APISpace voice takes a template id and params, not text")
            )
        joinable_params(draft.params, VOICE_ROW.separators, errors)
        options = voice_options(draft.options, errors)
        if errors:
            raise InvalidRequest(errors)
        assert to is not None
        return Valid(to=to, template=template, content=None, params=draft.params, options=options)

    def build_send(self, messages: Sequence[Message], now: float) -> Call:
        first = messages[0]
        form = {
            "mobile": ",".join(mainland(m.to) for m in messages),
            "templateId": first.template or "",
            "param": ",".join(first.params),
            "allowedCallTime": str(first.options.get("allowedCallTime", "")),
            "transData": str(first.options.get("transData", "")),
            "isNotifyFileId": str(first.options.get("isNotifyFileId", "")),
        }
        path = VOICE_PATH if len(messages) == 1 else BATCH_PATH
        return Call("POST", f"{self.base_url}{path}", headers=self._headers(), form=form)

    def parse_send(self, messages: Sequence[Message], reply: Reply) -> list[SendResult]:
        code, rule, answer = read_code(reply)
        if rule.outcome is not Outcome.ACCEPTED:
            return results_for(messages, rule, code, describe(answer, rule))
        if len(messages) == 1:
            ref = answer.get("callId")
            if not ref:
                raise UnreadableReply("accepted without a callId")
            return results_for(messages, rule, code, describe(answer, rule), str(ref))
        data = answer["data"]
        if not isinstance(data, list):
            raise UnreadableReply("a batch answer without a data list")
        paired = pair_by_number(messages, data, entry_number=lambda entry: str(entry["mobile"]))
        return [_batch_result(m, entry, code) for m, entry in zip(messages, paired, strict=True)]

    # -- the report pull ----------------------------------------------------------------

    def report_call(self, count: int = DEFAULT_REPORT_COUNT) -> Call:
        return Call(
            "GET",
            f"{self.report_base_url}{REPORT_PATH}",
            headers=self._headers(),
            params={"count": str(count)},
            idempotent=False,
        )

    def read_report(self, reply: Reply) -> ReportPage:
        answer = json_answer(reply, "code")
        if str(answer["code"]).strip() not in REPORT_OK:
            raise UnreadableReply(f"report pull refused: code {answer['code']}")
        data = answer.get("data") or []
        if not isinstance(data, list):
            raise UnreadableReply("report data is not a list")
        receipts: list[DeliveryReceipt] = []
        for entry in data:
            try:
                receipts.append(report_receipt(entry))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        return ReportPage(receipts, size=len(data), skipped=len(data) - len(receipts))

    def parse_report(self, reply: Reply) -> list[DeliveryReceipt]:
        return self.read_report(reply).receipts


def _batch_result(message: Message, entry: Mapping[str, Any] | None, code: str) -> SendResult:
    if entry is None:
        return SendResult(
            message.id, Outcome.AMBIGUOUS, code, "accepted batch did not list this number"
        )
    entry_code = str(entry.get("code", code))
    rule = rule_for(CODES, entry_code)
    ref = entry.get("callId")
    if rule.outcome is Outcome.ACCEPTED and not ref:
        return SendResult(message.id, Outcome.AMBIGUOUS, entry_code, "listed without a callId")
    return SendResult(
        message.id,
        rule.outcome,
        entry_code,
        describe(entry, rule),
        str(ref) if rule.outcome is Outcome.ACCEPTED else None,
        rule.block_seconds,
    )


def report_receipt(entry: Mapping[str, Any]) -> DeliveryReceipt:
    """One report line; KeyError/ValueError/TypeError when it is not one."""
    ref = str(entry["callId"]).strip()
    if not ref:
        raise ValueError("a report without a callId")
    result = entry.get("result") or {}
    if not isinstance(result, Mapping):
        raise TypeError("result is not an object")
    voice_code = str(entry.get("voiceCode") or "").strip()
    return DeliveryReceipt(
        ref=ref,
        delivered=voice_code == DELIVERED_VOICE_CODE,
        code=(voice_code or f"code:{entry.get('code', '')}")[:32],
        message=str(entry.get("voiceCodeDesc") or entry.get("desc") or "")[:255],
        detail={
            "code": str(entry.get("code", "")),
            "desc": str(entry.get("desc", ""))[:255],
            "timeLength": int(result.get("timeLength") or 0),
            **{
                name: str(result.get(name) or "")[:32]
                for name in ("answerTime", "invokeTime", "callTime", "byeTime", "callType")
            },
        },
    )


# -- SMS --------------------------------------------------------------------------------


def sms_text_errors(msg: str) -> list[FieldError]:
    """The seed's signature and template rules, each refused with its reason."""
    errors: list[FieldError] = []
    match = SIGNATURE.match(msg)
    if match is None:
        return [FieldError("content", "must start with the signature in 【】, e.g. 【Eolink】")]
    signature, body = match[1], msg[match.end() :]
    if not 2 <= len(signature) <= 20:
        errors.append(FieldError("content", "the signature must be 2 to 20 characters"))
    if any(ch.isspace() or ch in SIGNATURE_FORBIDDEN for ch in signature):
        errors.append(
            FieldError("content", "the signature may not hold spaces or any of - + * & % # @ ~")
        )
    if PLACEHOLDER not in body:
        errors.append(FieldError("content", f"must hold {PLACEHOLDER} where the code goes"))
    if body.startswith("【") or body.rstrip().endswith("】"):
        errors.append(
            FieldError("content", "the text may not begin or end with 【】 beyond the signature")
        )
    for link in LINK.finditer(body):
        before_ok = link.start() > 0 and body[link.start() - 1].isspace()
        after_ok = link.end() == len(body) or body[link.end()].isspace()
        if not (before_ok and after_ok):
            errors.append(FieldError("content", "a link needs a space before and after it"))
            break
    return errors


class ApispaceSms(Apispace):
    name = "apispace-sms"
    code_channel = "sms"
    code_setting = "verify_sms_text"

    def carry_code(self, code: str, template: str) -> CodeLeg:
        """The text holds ``{$var}``, which the platform fills with the one param."""
        return CodeLeg(content=template, params=(code,))

    def validate(self, draft: Draft) -> Valid:
        to, errors = check_number(draft.to, kinds=MOBILE_TYPES, what="a mainland China mobile")
        msg = (draft.content or "").strip()
        if not msg:
            errors.append(FieldError("content", "required: the text, 【signature】 and {$var}"))
        elif len(msg) > MAX_MSG:
            errors.append(FieldError("content", f"at most {MAX_MSG} characters"))
        else:
            errors += sms_text_errors(msg)
        if draft.template:
            errors.append(FieldError("template", "APISpace SMS takes the text in content"))
        if len(draft.params) != 1:
            errors.append(FieldError("params", "exactly one: the code that replaces {$var}"))
        else:
            joinable_params(draft.params, ",;", errors)
            if len(draft.params[0]) > MAX_CODE_VALUE:
                errors.append(FieldError("params[0]", f"at most {MAX_CODE_VALUE} characters"))
        unknown_options(draft.options, {"extend", "uid"}, errors)
        options = {k: str(v) for k, v in draft.options.items() if v not in (None, "")}
        for name, value in options.items():
            if len(value) > MAX_PASSTHROUGH:
                errors.append(
                    FieldError(f"options.{name}", f"at most {MAX_PASSTHROUGH} characters")
                )
        if errors:
            raise InvalidRequest(errors)
        assert to is not None
        return Valid(to=to, template=None, content=msg, params=draft.params, options=options)

    def batch_key(self, message: Message) -> Hashable:
        """One text and options for many numbers: each number's code rides in ``params``."""
        return (message.content, tuple(sorted(message.options.items())))

    def build_send(self, messages: Sequence[Message], now: float) -> Call:
        first = messages[0]
        body = {
            "msg": first.content or "",
            "params": ";".join(
                f"{mainland(m.to)},{m.params[0] if m.params else ''}" for m in messages
            ),
            "sendtime": "",
            "extend": str(first.options.get("extend", "")),
            "uid": str(first.options.get("uid", "")),
        }
        return Call("POST", f"{self.base_url}{SMS_PATH}", headers=self._headers(), json=body)

    def parse_send(self, messages: Sequence[Message], reply: Reply) -> list[SendResult]:
        """One answer for the request; each accepted number gets its own reference, since
        its receipt will come on its own (see :func:`sms_ref`)."""
        code, rule, answer = read_code(reply)
        if rule.outcome is not Outcome.ACCEPTED:
            return results_for(messages, rule, code, describe(answer, rule))
        data = answer.get("data")
        msg_id = str(data.get("msgId") or "").strip() if isinstance(data, Mapping) else ""
        detail = describe(answer, rule)
        if not msg_id:  # accepted all the same: sent, with no receipt to wait for
            return results_for(messages, rule, code, f"{detail} (no msgId: no receipt)")
        return [
            SendResult(m.id, rule.outcome, code, detail, sms_ref(msg_id, mainland(m.to)))
            for m in messages
        ]

    @staticmethod
    def parse_receipts(body: Any) -> list[DeliveryReceipt]:
        """The pushed delivery reports (ASSUMED shape: see the module docstring), one
        receipt per number; KeyError/ValueError/TypeError when the body or any report in
        it is not one — a push is taken whole or refused whole."""
        return [sms_receipt(entry) for entry in pushed_entries(body)]

    @staticmethod
    def cost_of(messages: Sequence[Message]) -> int:
        """Units a request for these messages is charged (each text with its own code)."""
        return sum(
            segments(filled(m.content or "", m.params[0] if m.params else "")) for m in messages
        )


def sms_ref(msg_id: str, mobile: str) -> str:
    """The reference of one number's SMS: the request's ``msgId`` (shortened to fit the
    ledger's 64 characters when it must be) and a digest of ``msgId`` and the 11-digit
    number. The digest, not the number, so a reference shown by ``notifyq status`` gives
    no number away; over the full ``msgId``, so shortening never makes two alike.
    ``parse_send`` and the receipt parser both call this: that is what makes them meet."""
    digest = hashlib.sha256(f"{msg_id}:{mobile}".encode()).hexdigest()[:NUMBER_DIGEST]
    return f"{msg_id[: MAX_REF - NUMBER_DIGEST - 1]}:{digest}"


def sms_receipt(entry: Mapping[str, Any]) -> DeliveryReceipt:
    """One pushed SMS report; KeyError/ValueError/TypeError when it is not one. The
    number is read in any spelling (``138…``, ``86138…``, ``+86 138…``) and reduced to
    the 11 digits the request carried, so the reference matches the one sent."""
    msg_id = required_text(entry, "msgId", MAX_MSG_ID)
    number = parse_number(required_text(entry, "mobile", 32))
    if number is None or number.country_code != 86:
        raise ValueError("mobile is not a mainland China number")
    status = required_text(entry, "status", 32)
    return DeliveryReceipt(
        ref=sms_ref(msg_id, mainland(e164(number))),
        delivered=status == SMS_DELIVERED,
        code=status,
        message=str(entry.get("desc") or "")[:255],
        detail={"msgId": msg_id[:MAX_REF], "reportTime": str(entry.get("reportTime") or "")[:32]},
    )
