"""ihuyi (互亿无线) voice notification: Submit, GetNum, AddTemplate, DelTemplate, and the
receipt and template-audit pushes (document ``ihuyi-voice-notify.txt``,
summarised in docs/providers.md).

Wire: ``POST {base}/webservice/voice.php?method=<Method>``, form-encoded UTF-8, over
HTTPS (the seed's 1.4: "采用HTTPS协议提交请求"; the default base URL is
``https://api.vm.ihuyi.com``). Always POST — a GET would put the password in the URL,
where proxies and logs keep it. The password is the *dynamic* one, signed at send time:

- Submit: ``md5(account + apikey + mobile + content + time)``
- GetNum: ``md5(account + apikey + time)``

Assumptions (the seed leaves these open; decided here, once):

- ASSUMED: AddTemplate and DelTemplate take the GetNum form of the dynamic password,
  ``md5(account + apikey + time)``: the seed gives two formulas, one for the call that
  carries a number and a text (Submit) and one for the call that carries neither
  (GetNum); the template calls carry no number, so they take the second. Why, and how
  the sandbox checks it on its own: ``docs/providers.md``.
- ASSUMED: with ``format=json`` the answer is one object with the same names as the
  XML elements (``{"code": 2, "msg": "...", "voiceid": "..."}``); XML answers
  (``<SubmitResult><code>…``, with or without a namespace) are read too.
- ASSUMED: code ``0`` ("提交失败", no reason given) is transient: it is retried, with
  the attempt cap, rather than dropped.
- ``4071`` (no template filed) is a fault of *this content* — no filed template
  matches it — like 4072: the notification fails; the account goes on sending others.
- 4030 (blacklisted) and 406 (bad number format) say the *number* is bad, not the
  request: such a number is suppressed (``bad_number``; tasks/suppressions.py) and never
  called through ihuyi again until an operator lifts it. So is a number whose receipt
  says ``-5`` (空号, vacant).
- ASSUMED: after 4080/4081/4082 the number is blocked for the cap's whole window from
  now (1 s, 60 s, 24 h): the provider does not say when its own window frees.
- ASSUMED: ``content`` may not still hold a ``【变量】`` placeholder (an unfilled
  template); its length is capped at 500 characters (the seed gives no figure).
- Receipt ``code`` 2 is delivered; every other code — the documented 0, -1 … -12 and
  any the seed does not list (-7, say) — is undelivered and stored with its raw code,
  then answered ``success``: a receipt refused would be pushed again three times and
  then lost, leaving the row ``sent`` for ever.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    SendResult,
    UnreadableReply,
    Valid,
    check_number,
    mainland,
    results_for,
    rule_for,
    unknown_options,
)
from providers.settings import DEFAULT_NUMBER_CAPS, ProviderSettings

PATH = "/webservice/voice.php"
MAX_CONTENT = 500
PLACEHOLDER = "【变量】"
#: where a verification code goes in the text for codes
CODE_MARK = "{code}"

A, P, T, C = Outcome.ACCOUNT, Outcome.PERMANENT, Outcome.TRANSIENT, Outcome.CAPPED

SUBMIT_CODES: dict[str, CodeRule] = {
    "2": CodeRule(Outcome.ACCEPTED, "提交成功"),
    "0": CodeRule(T, "提交失败"),
    "400": CodeRule(A, "非法ip访问"),
    "401": CodeRule(A, "帐号不能为空"),
    "402": CodeRule(A, "密码不能为空"),
    "403": CodeRule(P, "手机号码不能为空"),
    "4030": CodeRule(P, "手机号码已被列入黑名单", bad_number="blacklisted"),
    "404": CodeRule(P, "语音内容不能为空"),
    "405": CodeRule(A, "用户名或密码不正确"),
    "4050": CodeRule(A, "账号被冻结"),
    "40505": CodeRule(A, "没有签定合同"),
    "4051": CodeRule(A, "剩余条数不足"),
    "4052": CodeRule(A, "访问ip与备案ip不符"),
    "406": CodeRule(P, "手机格式不正确", bad_number="malformed"),
    "407": CodeRule(P, "短信内容含有敏感字符"),
    "4071": CodeRule(P, "没有提交备案模板"),
    "4072": CodeRule(P, "提交的语音内容必须与报备过的模板格式相匹配"),
    "40722": CodeRule(P, "变量内容超过指定的长度"),
    "4077": CodeRule(P, "发送内容未在运营商报备"),
    "408": CodeRule(A, "您的帐户疑被恶意利用,已被自动冻结"),
    "4080": CodeRule(C, "同一手机号码同一秒钟之内发送频率不能超过1条", block_seconds=1),
    "4081": CodeRule(C, "同一手机号一分钟之内发送超过3条", block_seconds=60),
    "4082": CodeRule(C, "超出同一手机号一天之内10条短信限制", block_seconds=86400),
}

#: GetNum, AddTemplate, DelTemplate: 2 is success; the rest are account problems,
#: except a template's own faults (404 empty/unknown, 407 sensitive, 408 exists).
ADMIN_CODES: dict[str, CodeRule] = {
    "2": CodeRule(Outcome.ACCEPTED, "成功"),
    "400": CodeRule(A, "非法ip访问"),
    "401": CodeRule(A, "帐号不能为空"),
    "402": CodeRule(A, "密码不能为空"),
    "404": CodeRule(P, "模板内容或模板ID为空或不存在"),
    "405": CodeRule(A, "用户名或密码不正确"),
    "4050": CodeRule(A, "账号被冻结"),
    "407": CodeRule(P, "模板内容含有敏感字符"),
    "408": CodeRule(P, "模板己存在"),
}

DELIVERED = "2"
#: receipt codes that say the number itself is bad: it is suppressed for ihuyi
RECEIPT_BAD_NUMBER = {"-5": "vacant"}
#: a receipt code longer than this is no code (the ledger keeps 32 characters)
MAX_RECEIPT_CODE = 32

RECEIPT_CODES: dict[str, str] = {
    "2": "成功",
    "0": "未知错误",
    "-1": "关机",
    "-2": "停机",
    "-3": "暂时无法接通",
    "-4": "正在通话",
    "-5": "空号",
    "-6": "无人接听",
    "-8": "呼入限制",
    "-9": "网络忙",
    "-10": "呼出限制",
    "-11": "线路忙",
    "-12": "用户拒接",
}


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - the provider's scheme


def submit_password(account: str, apikey: str, mobile: str, content: str, time: int | str) -> str:
    return md5(f"{account}{apikey}{mobile}{content}{time}")


def getnum_password(account: str, apikey: str, time: int | str) -> str:
    return md5(f"{account}{apikey}{time}")


@dataclass(frozen=True)
class AdminResult:
    """The answer to GetNum, AddTemplate or DelTemplate."""

    ok: bool
    outcome: Outcome
    code: str
    message: str
    #: GetNum's remaining count, AddTemplate's template id
    value: str | None = None


@dataclass(frozen=True)
class TemplateAudit:
    template_id: str
    approved: bool
    message: str


def read_answer(reply: Reply) -> dict[str, str]:
    """A JSON or XML answer as a flat dict of strings."""
    body = reply.body.strip()
    if body.startswith(b"{"):
        data = reply.json()
        if not isinstance(data, dict) or "code" not in data:
            raise UnreadableReply("JSON without a code")
        return {str(k): "" if v is None else str(v) for k, v in data.items()}
    if body.startswith(b"<"):
        try:
            root = ET.fromstring(body)  # noqa: S314 - no entities expanded by ElementTree
        except ET.ParseError as exc:
            raise UnreadableReply(f"not XML: {exc}") from exc
        values = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in root}
        if "code" not in values:
            raise UnreadableReply("XML without a code")
        return values
    raise UnreadableReply("neither JSON nor XML")


class IhuyiSettings(ProviderSettings):
    """ihuyi's settings (``NOTIFYQ_IHUYI_*``)."""

    credentials = ("account", "apikey")

    account: str | None = Field(None, alias="ihuyi_account")
    apikey: SecretStr | None = Field(None, alias="ihuyi_apikey")
    base_url: str = Field("https://api.vm.ihuyi.com", alias="ihuyi_base_url")
    caps: str = Field(DEFAULT_NUMBER_CAPS, alias="ihuyi_caps")
    window: str = Field("", alias="ihuyi_window")
    rate: str = Field("", alias="ihuyi_rate")
    callback_token: SecretStr | None = Field(None, alias="ihuyi_callback_token")


class Ihuyi(Provider):
    name = "ihuyi"
    code_channel = "voice"
    code_setting = "verify_voice_text"

    def __init__(self, account: str | None, apikey: SecretStr | None, base_url: str) -> None:
        self.account = account
        self.apikey = apikey
        self.base_url = base_url.rstrip("/")

    def _credentials(self) -> tuple[str, str]:
        if not self.account:
            raise MissingCredentials(self.name, "NOTIFYQ_IHUYI_ACCOUNT")
        if self.apikey is None:
            raise MissingCredentials(self.name, "NOTIFYQ_IHUYI_APIKEY")
        return self.account, self.apikey.get_secret_value()

    def _url(self, method: str) -> str:
        return f"{self.base_url}{PATH}?method={method}"

    # -- sending ----------------------------------------------------------------------

    def carry_code(self, code: str, template: str) -> CodeLeg:
        """ihuyi takes the full text: the code is written into it at :data:`CODE_MARK`."""
        if CODE_MARK not in template:
            raise InvalidRequest([FieldError("template", f"must hold {CODE_MARK} for the code")])
        return CodeLeg(content=template.replace(CODE_MARK, code))

    def validate(self, draft: Draft) -> Valid:
        to, errors = check_number(
            draft.to,
            kinds=MOBILE_TYPES | LANDLINE_TYPES,
            what="a mainland China mobile or landline with area code",
        )
        content = (draft.content or "").strip()
        if not content:
            errors.append(FieldError("content", "required: the full text to be read out"))
        elif len(content) > MAX_CONTENT:
            errors.append(FieldError("content", f"at most {MAX_CONTENT} characters"))
        elif PLACEHOLDER in content:
            errors.append(FieldError("content", f"fill in every {PLACEHOLDER} of the template"))
        if draft.template:
            errors.append(
                FieldError("template", "ihuyi takes the full text in content, not a template id")
            )
        if draft.params:
            errors.append(
                FieldError("params", "ihuyi takes the full text in content, not variables")
            )
        unknown_options(draft.options, set(), errors)
        if errors:
            raise InvalidRequest(errors)
        assert to is not None
        return Valid(to=to, template=None, content=content, params=(), options={})

    def build_send(self, messages: Sequence[Message], now: float) -> Call:
        (message,) = messages
        account, apikey = self._credentials()
        mobile = mainland(message.to)
        content = message.content or ""
        stamp = int(now)
        return Call(
            "POST",
            self._url("Submit"),
            form={
                "account": account,
                "password": submit_password(account, apikey, mobile, content, stamp),
                "mobile": mobile,
                "content": content,
                "time": str(stamp),
                "format": "json",
            },
        )

    def parse_send(self, messages: Sequence[Message], reply: Reply) -> list[SendResult]:
        answer = read_answer(reply)
        code = answer["code"]
        rule = rule_for(SUBMIT_CODES, code)
        ref = answer.get("voiceid") if rule.outcome is Outcome.ACCEPTED else None
        if rule.outcome is Outcome.ACCEPTED and (not ref or ref == "0"):
            raise UnreadableReply("accepted without a voiceid")
        return results_for(messages, rule, code, answer.get("msg") or rule.meaning, ref)

    # -- account tools ------------------------------------------------------------------

    def _admin_form(self, now: float, **fields: str) -> dict[str, str]:
        account, apikey = self._credentials()
        stamp = int(now)
        return {
            "account": account,
            "password": getnum_password(account, apikey, stamp),
            "time": str(stamp),
            "format": "json",
            **fields,
        }

    def balance_call(self, now: float) -> Call:
        return Call("POST", self._url("GetNum"), form=self._admin_form(now), idempotent=True)

    def add_template_call(self, content: str, now: float) -> Call:
        return Call("POST", self._url("AddTemplate"), form=self._admin_form(now, content=content))

    def delete_template_call(self, template_id: str, now: float) -> Call:
        return Call(
            "POST", self._url("DelTemplate"), form=self._admin_form(now, templateid=template_id)
        )

    @staticmethod
    def parse_admin(reply: Reply, value_field: str | None = None) -> AdminResult:
        try:
            answer = read_answer(reply)
        except UnreadableReply as exc:
            return AdminResult(False, Outcome.TRANSIENT, f"http:{reply.status}", str(exc))
        rule = rule_for(ADMIN_CODES, answer["code"])
        ok = rule.outcome is Outcome.ACCEPTED
        return AdminResult(
            ok,
            rule.outcome,
            answer["code"],
            answer.get("msg") or rule.meaning,
            answer.get(value_field) if value_field and ok else None,
        )

    # -- pushes to us -------------------------------------------------------------------

    @staticmethod
    def parse_receipt(form: Mapping[str, Any]) -> DeliveryReceipt:
        """The delivery receipt push; KeyError/ValueError on a malformed one."""
        ref = str(form["voiceid"]).strip()
        code = str(form["code"]).strip()
        if not ref or ref == "0" or not code or len(code) > MAX_RECEIPT_CODE:
            raise ValueError("not an ihuyi receipt")
        talktime = str(form.get("talktime") or "0").strip() or "0"
        seconds = int(talktime) if talktime.isascii() and talktime.isdigit() else 0
        return DeliveryReceipt(
            ref=ref,
            delivered=code == DELIVERED,
            code=code,
            message=str(form.get("msg") or RECEIPT_CODES.get(code, "undocumented code"))[:255],
            detail={
                "talktime": seconds,
                "report_time": str(form.get("report_time") or "")[:32],
                **({} if code in RECEIPT_CODES else {"undocumented": True}),
            },
            bad_number=RECEIPT_BAD_NUMBER.get(code),
        )

    @staticmethod
    def parse_template_audit(form: Mapping[str, Any]) -> TemplateAudit:
        template_id = str(form["templateid"]).strip()
        code = str(form["code"]).strip()
        if not template_id.isdigit() or code not in ("0", "2"):
            raise ValueError("not an ihuyi template audit")
        return TemplateAudit(template_id, code == "2", str(form.get("msg") or "")[:255])
