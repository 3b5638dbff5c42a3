"""ihuyi emulated: ``/webservice/voice.php?method=Submit|GetNum|AddTemplate|DelTemplate``.

Checks the dynamic password and the time stamp (stale → 405, as a wrong password;
ASSUMED, the seed names no code for it), enforces the per-number caps on arrival
(4080 more than 1 in a second, 4081 more than 3 in a minute, 4082 more than 10 in
24 hours), answers XML by default or JSON with ``format=json``, and pushes the receipt
to the URL bound in its "console" with the seed's retry rule.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.seeds import (
    AFTER_PLACING,
    NOT_PLACED,
    error_page,
    mainland_number,
    md5_hex,
)
from sandbox.state import Sandbox, SlidingCounter

PATH = "/webservice/voice.php"


def submit_password(account: str, apikey: str, mobile: str, content: str, stamp: str) -> str:
    """Seed 7: "$password = md5($account.$apikey.$mobile.$content.$time)"."""
    return md5_hex(account, apikey, mobile, content, stamp)


def plain_password(account: str, apikey: str, stamp: str) -> str:
    """Seed 7, the balance query: "$password = md5($account.$apikey.$time)". The seed
    gives no formula for AddTemplate/DelTemplate; they carry no number or text, so the
    sandbox takes this one for them (docs/providers.md, "ihuyi template calls")."""
    return md5_hex(account, apikey, stamp)


RESULT_NAMES = {
    "Submit": "SubmitResult",
    "GetNum": "GetNumResult",
    "AddTemplate": "AddTemplateResult",
    "DelTemplate": "DelTemplateResult",
}

RECEIPT_CODE = {
    "answered": "2",
    "no-answer": "-6",
    "busy": "-4",
    "vacant": "-5",
    "off": "-1",
    "rejected": "-12",
}

CAPS = (("4080", 1.0, 1), ("4081", 60.0, 3), ("4082", 86400.0, 10))


def answer(method: str, fmt: str, values: dict[str, Any]) -> Response:
    if fmt == "json":
        return JSONResponse(values)
    name = RESULT_NAMES.get(method, "Result")
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in values.items())
    body = f'<?xml version="1.0" encoding="utf-8"?>\n<{name} xmlns="http://106.ihuyi.com/">{inner}</{name}>'
    return Response(body, media_type="text/xml")


class IhuyiEmulator:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.caps = SlidingCounter()
        self.balance = 100000
        self.templates: dict[str, str] = {}
        self._template_ids = iter(range(1000, 10**9))

    def routes(self) -> list[Route]:
        return [Route(PATH, self.handle, methods=["GET", "POST"])]

    async def handle(self, request: Request) -> Response:
        fields: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            fields.update(await request.form())
        method = str(fields.get("method", ""))
        fmt = "json" if fields.get("format") == "json" else "xml"
        fault = await self.sandbox.fault("ihuyi")
        if fault == "fail":
            self.sandbox.ledger.add(
                "ihuyi", method, fields.get("mobile"), f"http:{NOT_PLACED}", placed=False
            )
            return error_page(NOT_PLACED)
        handler = {
            "Submit": self.submit,
            "GetNum": self.getnum,
            "AddTemplate": self.add_template,
            "DelTemplate": self.del_template,
        }.get(method)
        if handler is None:
            return Response("unknown method", status_code=404)
        values = handler(fields)
        if fault == "timeout":
            await self.sandbox.hold()
        if fault == "error":
            return error_page(AFTER_PLACING)
        return answer(method, fmt, values)

    def _auth(self, fields: dict[str, Any], *signed: str) -> dict[str, Any] | None:
        cfg = self.sandbox.config
        account = str(fields.get("account", ""))
        password = str(fields.get("password", ""))
        if not account:
            return {"code": 401, "msg": "帐号不能为空"}
        if not password:
            return {"code": 402, "msg": "密码不能为空"}
        stamp = str(fields.get("time", ""))
        if account != cfg.ihuyi_account:
            return {"code": 405, "msg": "用户名或密码不正确"}
        if password == cfg.ihuyi_apikey:  # the static APIKEY is accepted too
            return None
        if not stamp.isdigit() or len(stamp) != 10 or not self.sandbox.stamp_fresh(int(stamp)):
            return {"code": 405, "msg": "用户名或密码不正确"}
        expected = (
            submit_password(account, cfg.ihuyi_apikey, *signed, stamp)
            if signed
            else plain_password(account, cfg.ihuyi_apikey, stamp)
        )
        if password != expected:
            return {"code": 405, "msg": "用户名或密码不正确"}
        return None

    def submit(self, fields: dict[str, Any]) -> dict[str, Any]:
        mobile = str(fields.get("mobile", ""))
        content = str(fields.get("content", ""))
        failure = self._auth(fields, mobile, content)
        if failure is None:
            failure = self._check(mobile, content)
        ledger = self.sandbox.ledger
        if failure is not None:
            ledger.add(
                "ihuyi",
                "Submit",
                mobile or None,
                str(failure["code"]),
                placed=False,
                content=content,
            )
            return {**failure, "voiceid": "0"}
        now = self.sandbox.now()
        self.caps.add(mobile, now)
        self.balance -= 1
        voiceid = self.sandbox.new_ref()
        ledger.add("ihuyi", "Submit", mobile, "2", placed=True, ref=voiceid, content=content)
        self._schedule_receipt(mobile, voiceid)
        return {"code": 2, "msg": "提交成功", "voiceid": voiceid}

    def _check(self, mobile: str, content: str) -> dict[str, Any] | None:
        if not mobile:
            return {"code": 403, "msg": "手机号码不能为空"}
        if not content:
            return {"code": 404, "msg": "语音内容不能为空"}
        if not mainland_number(mobile):
            return {"code": 406, "msg": "手机格式不正确"}
        seeded = self.sandbox.refusal_for(mobile)
        if seeded is not None:
            return {"code": int(seeded), "msg": "seeded refusal"}
        if "【变量】" in content:
            return {"code": 4072, "msg": "提交的语音内容必须与报备过的模板格式相匹配"}
        if self.balance <= 0:
            return {"code": 4051, "msg": "剩余条数不足"}
        now = self.sandbox.now()
        for code, window, amount in CAPS:
            if self.caps.count(mobile, window, now) >= amount:
                return {"code": int(code), "msg": "超过频率限制"}
        return None

    def _schedule_receipt(self, mobile: str, voiceid: str) -> None:
        url = self.sandbox.config.ihuyi_receipt_url
        if not url:
            return
        kind = self.sandbox.outcome_for(mobile)
        code = RECEIPT_CODE[kind]
        form = {
            "code": code,
            "msg": "成功" if code == "2" else kind,
            "mobilephone": mobile,
            "talktime": "12" if code == "2" else "0",
            "voiceid": voiceid,
            "report_time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.sandbox.now())),
        }
        self.sandbox.later(self.sandbox.config.receipt_delay, lambda: self.sandbox.push(url, form))

    def getnum(self, fields: dict[str, Any]) -> dict[str, Any]:
        failure = self._auth(fields)
        self.sandbox.ledger.add(
            "ihuyi", "GetNum", None, str(failure["code"]) if failure else "2", placed=False
        )
        if failure:
            return {**failure, "num": 0}
        return {"code": 2, "msg": "查询成功", "num": self.balance}

    def add_template(self, fields: dict[str, Any]) -> dict[str, Any]:
        failure = self._auth(fields)
        content = str(fields.get("content", "")).strip()
        if failure is None and not content:
            failure = {"code": 404, "msg": "模板内容不能为空"}
        if failure is None and content in self.templates.values():
            failure = {"code": 408, "msg": "模板己存在"}
        if failure is not None:
            self.sandbox.ledger.add(
                "ihuyi", "AddTemplate", None, str(failure["code"]), placed=False
            )
            return failure
        template_id = str(next(self._template_ids))
        self.templates[template_id] = content
        self.sandbox.ledger.add("ihuyi", "AddTemplate", None, "2", placed=False, ref=template_id)
        url = self.sandbox.config.ihuyi_template_url
        if url:
            form = {"code": "2", "msg": "审核通过", "templateid": template_id}
            self.sandbox.later(
                self.sandbox.config.receipt_delay, lambda: self.sandbox.push(url, form)
            )
        return {"code": 2, "msg": "添加成功", "templateid": template_id}

    def del_template(self, fields: dict[str, Any]) -> dict[str, Any]:
        failure = self._auth(fields)
        template_id = str(fields.get("templateid", ""))
        if failure is None and template_id not in self.templates:
            failure = {"code": 404, "msg": "模板ID不能为空或模板ID不存在"}
        if failure is not None:
            self.sandbox.ledger.add(
                "ihuyi", "DelTemplate", None, str(failure["code"]), placed=False
            )
            return failure
        del self.templates[template_id]
        self.sandbox.ledger.add("ihuyi", "DelTemplate", None, "2", placed=False, ref=template_id)
        return {"code": 2, "msg": "删除成功"}
