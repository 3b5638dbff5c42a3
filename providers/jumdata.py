"""jumdata "random caller" voice notification (语音通知-随机主叫): the send API and the
call-result callback (document ``jumdata-random-caller-voice.html``,
summarised in docs/providers.md).

Wire: ``POST {base}/voice-notify/send``, form-encoded: ``appId``, ``timestamp``
(milliseconds), ``sign = sha256(appId + appSecret + timestamp)`` (hex), ``mobile`` (one
11-digit mainland mobile), ``templateId``, ``param`` (variables joined by ``,``),
``playTimes`` (at most 3), ``notifyUrl``. Signed at send time.

The provider's own limits: calls only 09:00–21:00 Beijing time; a number takes at most
3 calls a day, after which it is blocked, and *every* call attempted while blocked
restarts the 24-hour block. So a blocked answer must never be retried soon: it is
CAPPED for a whole day, and our caps (``3/day``) and window are meant to keep us from
ever hearing it.

Assumptions (the seed leaves these open; decided here, once):

- ASSUMED: ``notifyData`` is sent at send time in a field of that name (the callback
  echoes it); we send the notification id, so a callback can be traced to its row.
- ASSUMED: the callback is a form POST (JSON is read too) answered with ``success``.
- ASSUMED: a blocked number is answered with code ``605``; a call outside 09:00–21:00
  with code ``606``. The seed names neither. Because a blind retry of a blocked number
  extends its block, a refusal whose ``msg`` says it in the seed's own words for the
  block (:data:`LIMIT_WORDS`: 被限制 "is restricted", 超过3次 "more than 3 times",
  限制期间 "while restricted") is read as the block too, whatever its code. Nothing
  else is: "呼叫过于频繁" (too frequent) may be a per-second limit, and a 24-hour wait
  for it would lose a day.
- The window is Beijing time whatever ``NOTIFYQ_TIMEZONE`` says (the seed's 早9晚9 is
  the provider's clock): :data:`WINDOW_ZONE`, which the settings apply to jumdata's
  window.
- ``605`` (blocked): CAPPED, blocked 86 400 s — the block lasts 24 h from the attempt.
- ``606`` (outside the window): CAPPED with a 600 s block, not transient. Nothing is
  wrong with the request, only with its moment: our own window check (settings)
  normally prevents this, so hearing it means clocks or settings disagree. Deferring
  hands it back to the admission, whose window check then waits for the real opening;
  it never burns the attempts of a notification whose only fault is the hour, and 10
  minutes keeps a misconfigured window from hammering the provider all night.
- ASSUMED: ``404`` (wrong URL) is account-wide: a misconfigured base URL stops every
  send alike. ``500``/``501`` (maintenance, "try again later") are transient: the
  provider says it did not take the call. ``999`` ("other, see the message") says
  nothing of whether a call was placed: ambiguous, never resent blind.
- ASSUMED: ``templateId`` is at most 64 characters; a ``param`` value may not hold
  ``,`` (the separator).
- Callback ``callStatus`` ``0`` is delivered (answered and billed), ``1`` undelivered;
  any other value is undelivered too, stored with its raw value, and answered
  ``success`` so the provider stops pushing (refusing it would lose it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, SecretStr

from providers.base import (
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
    RowFields,
    SendResult,
    UnreadableReply,
    Valid,
    check_number,
    int_option,
    joinable_params,
    json_answer,
    mainland,
    results_for,
    rule_for,
    unknown_options,
)
from providers.settings import ProviderSettings

PATH = "/voice-notify/send"
MAX_TEMPLATE = 64
MAX_PLAY_TIMES = 3
BLOCKED_CODE = "605"
WINDOW_CODE = "606"
BLOCK_SECONDS = 86400.0
WINDOW_RETRY_SECONDS = 600.0
#: the seed's own words for the block (its 注意: "如超过3次会被限制,限制期间…"): a
#: refusal that holds one is the block whatever its code ("长度限制" is not one of them)
LIMIT_WORDS = ("被限制", "超过3次", "限制期间")
#: the provider's clock: its calling window is 09:00–21:00 here
WINDOW_ZONE = "Asia/Shanghai"

A, P, T, C = Outcome.ACCOUNT, Outcome.PERMANENT, Outcome.TRANSIENT, Outcome.CAPPED

CODES: dict[str, CodeRule] = {
    "200": CodeRule(Outcome.ACCEPTED, "成功"),
    "400": CodeRule(P, "参数错误"),
    "404": CodeRule(A, "接口地址不正确"),
    "500": CodeRule(T, "系统维护,请稍候再试"),
    "501": CodeRule(T, "官方数据源维护,请稍候再试"),
    "601": CodeRule(A, "接口未开通"),
    "602": CodeRule(A, "账号停用"),
    "603": CodeRule(A, "余额不足请充值"),
    "604": CodeRule(A, "接口停用"),
    "999": CodeRule(Outcome.AMBIGUOUS, "其他,以实际返回为准"),
    BLOCKED_CODE: CodeRule(C, "号码已被限制(24小时)", block_seconds=BLOCK_SECONDS),
    WINDOW_CODE: CodeRule(C, "不在呼叫时间内(09:00-21:00)", block_seconds=WINDOW_RETRY_SECONDS),
}

CALL_STATUS = {"0": "成功", "1": "失败"}
DELIVERED = "0"
#: a callStatus longer than this is no status (the ledger keeps 32 characters)
MAX_STATUS = 32


def sign(app_id: str, app_secret: str, timestamp_ms: int | str) -> str:
    return hashlib.sha256(f"{app_id}{app_secret}{timestamp_ms}".encode()).hexdigest()


def rule_of(code: str, msg: str) -> CodeRule:
    """The code's rule — unless the words say the number is blocked (see the docstring)."""
    rule = rule_for(CODES, code)
    if rule.outcome is not Outcome.ACCEPTED and any(word in msg for word in LIMIT_WORDS):
        return CODES[BLOCKED_CODE]
    return rule


class JumdataSettings(ProviderSettings):
    """jumdata's settings (``NOTIFYQ_JUMDATA_*``): its window is on its own clock."""

    window_zone = WINDOW_ZONE
    credentials = ("app_id", "app_secret")

    app_id: str | None = Field(None, alias="jumdata_app_id")
    app_secret: SecretStr | None = Field(None, alias="jumdata_app_secret")
    base_url: str = Field("https://api.jumdata.com", alias="jumdata_base_url")
    caps: str = Field("3/day", alias="jumdata_caps")
    window: str = Field("09:00-21:00", alias="jumdata_window")
    rate: str = Field("", alias="jumdata_rate")
    callback_token: SecretStr | None = Field(None, alias="jumdata_callback_token")


#: a row's own fields: a mainland mobile, variables joined by commas on the wire
ROW = RowFields(MOBILE_TYPES, "an 11-digit mainland mobile", ",")


class Jumdata(Provider):
    name = "jumdata"
    row_fields = ROW
    code_channel = "voice"
    code_setting = "verify_jumdata_template"

    def carry_code(self, code: str, template: str) -> CodeLeg:
        """A template id filed with jumdata, the code its one variable."""
        if not template:
            setting = f"NOTIFYQ_{self.code_setting.upper()}"
            raise InvalidRequest(
                [FieldError("template", f"{self.name} needs a template id ({setting})")]
            )
        return CodeLeg(template=template, params=(code,))

    def __init__(
        self,
        app_id: str | None,
        app_secret: SecretStr | None,
        base_url: str,
        notify_url: str | None,
    ) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.base_url = base_url.rstrip("/")
        #: where jumdata posts call results (None: no callback token set, no receipts)
        self.notify_url = notify_url

    def _credentials(self) -> tuple[str, str]:
        if not self.app_id:
            raise MissingCredentials(self.name, "NOTIFYQ_JUMDATA_APP_ID")
        if self.app_secret is None:
            raise MissingCredentials(self.name, "NOTIFYQ_JUMDATA_APP_SECRET")
        return self.app_id, self.app_secret.get_secret_value()

    def validate(self, draft: Draft) -> Valid:
        to, errors = check_number(draft.to, kinds=ROW.kinds, what=ROW.what)
        template = (draft.template or "").strip()
        if not template:
            errors.append(FieldError("template", "required: the jumdata template id"))
        elif len(template) > MAX_TEMPLATE or any(ch.isspace() for ch in template):
            errors.append(FieldError("template", f"at most {MAX_TEMPLATE} characters, no spaces"))
        if draft.content:
            errors.append(FieldError("content", "jumdata takes a template id and params, not text"))
        joinable_params(draft.params, ROW.separators, errors)
        unknown_options(draft.options, {"playTimes"}, errors)
        play_times = int_option(draft.options, "playTimes", 1, MAX_PLAY_TIMES, errors)
        if errors:
            raise InvalidRequest(errors)
        assert to is not None
        options = {} if play_times is None else {"playTimes": play_times}
        return Valid(to=to, template=template, content=None, params=draft.params, options=options)

    def build_send(self, messages: Sequence[Message], now: float) -> Call:
        (message,) = messages
        app_id, app_secret = self._credentials()
        stamp = int(now * 1000)
        form = {
            "appId": app_id,
            "timestamp": str(stamp),
            "sign": sign(app_id, app_secret, stamp),
            "mobile": mainland(message.to),
            "templateId": message.template or "",
            "param": ",".join(message.params),
            "notifyData": str(message.id),
        }
        if message.options.get("playTimes") not in (None, ""):
            form["playTimes"] = str(message.options["playTimes"])
        if self.notify_url:
            form["notifyUrl"] = self.notify_url
        return Call("POST", f"{self.base_url}{PATH}", form=form)

    def parse_send(self, messages: Sequence[Message], reply: Reply) -> list[SendResult]:
        answer = json_answer(reply, "code")
        code = str(answer["code"])
        msg = str(answer.get("msg") or "")
        rule = rule_of(code, msg)
        ref = None
        if rule.outcome is Outcome.ACCEPTED:
            data = answer.get("data")
            ref = data.get("callId") if isinstance(data, Mapping) else None
            if not ref:
                raise UnreadableReply("accepted without a callId")
        return results_for(messages, rule, code, msg or rule.meaning, str(ref) if ref else None)

    @staticmethod
    def parse_callback(form: Mapping[str, Any]) -> DeliveryReceipt:
        """The call-result push; KeyError/ValueError on a malformed one."""
        ref = str(form["callId"]).strip()
        status = str(form["callStatus"]).strip()
        if not ref or not status or len(status) > MAX_STATUS:
            raise ValueError("not a jumdata call result")
        talk = str(form.get("callTime") or "0").strip()
        meaning = CALL_STATUS.get(status, "undocumented callStatus")
        return DeliveryReceipt(
            ref=ref,
            delivered=status == DELIVERED,
            code=status,
            message=str(form.get("callStatusText") or meaning)[:255],
            detail={
                "callTime": int(talk) if talk.isascii() and talk.isdigit() else 0,
                "notifyData": str(form.get("notifyData") or "")[:64],
                **({} if status in CALL_STATUS else {"undocumented": True}),
            },
        )
