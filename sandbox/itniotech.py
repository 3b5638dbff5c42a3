"""itniotech emulated: ``POST /voice/sendGroup``.

Checks the ``Api-Key`` (``-1``), the ``Timestamp`` in seconds (``-16`` when more than
``stamp_tolerance``, 300 s by default, from the sandbox's clock), the
``Sign = md5(apiKey + apiSecret + timestamp)`` (``-1``), and the body: ``callee`` (at
most 1000, each country code + number in 7–15 digits — the seed's own words, so its
example ``91856321412`` is one), ``fileId``, ``appId`` and the option ranges: any of
them wrong is ``-22`` for the whole request, and no one is called. Answers one entry
per callee: a callee with a refusal seeded for it (``SandboxConfig.refusals``) gets
that code as its ``terminationCode`` and no call, unless the seeded code is a status
(``-22``, ``-10``…), which refuses the whole request. Every
other callee is called, and ``receipt_delay × time_scale`` later its result is pushed
as one JSON object to ``itniotech_receipt_url`` (the ASSUMED push of
``providers/itniotech.py``), repeated up to 3 times until the receiver says
``success``. Result ``status`` ``"0"`` is answered; the other codes are the sandbox's
own (:data:`CALL_STATUS`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.seeds import (
    AFTER_PLACING,
    NOT_PLACED,
    error_page,
    international_callee,
    md5_hex,
)
from sandbox.state import Sandbox

PATH = "/voice/sendGroup"
#: "被叫号码,最大1000个手机号"
MAX_BATCH = 1000
#: "被叫信息,0-1000位字符"
MAX_CALLED_INFO = 1000
#: (field, low, high): "1-120数字", "可输入20-120秒", "1-9数字"
INT_OPTIONS = (("maxDuration", 1, 120), ("maxRingingTime", 20, 120), ("loopCount", 1, 9))


def sign(api_key: str, api_secret: str, timestamp: str) -> str:
    """ "$sign = md5($apiKey.$apiSecret.$timeStamp)"."""
    return md5_hex(api_key, api_secret, timestamp)


PROVIDER = "itniotech"
INVALID_CALLEE = "10001"

#: outcome kind → (status, reason, seconds talked) of the pushed call result
CALL_STATUS = {
    "answered": ("0", "answered", 12),
    "no-answer": ("1", "no answer", 0),
    "busy": ("2", "busy", 0),
    "vacant": ("3", "invalid number", 0),
    "off": ("4", "switched off", 0),
    "rejected": ("5", "rejected", 0),
}


def refused(status: str, reason: str) -> dict[str, Any]:
    return {"status": status, "reason": reason, "data": []}


def body_failure(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        return refused("-22", "参数异常: body")
    callees = [c for c in str(body.get("callee") or "").split(",") if c]
    if not callees or len(callees) > MAX_BATCH:
        return refused("-22", "参数异常: callee")
    if not all(international_callee(c) for c in callees):
        return refused("-22", "参数异常: callee")
    if not body.get("fileId") or not body.get("appId"):
        return refused("-22", "参数异常: fileId, appId")
    for name, low, high in INT_OPTIONS:
        value = body.get(name)
        if value in (None, ""):
            continue
        if not str(value).isdigit() or not low <= int(value) <= high:
            return refused("-22", f"参数异常: {name}")
    if len(str(body.get("calledInfo") or "")) > MAX_CALLED_INFO:
        return refused("-22", "参数异常: calledInfo")
    return None


class ItniotechEmulator:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def routes(self) -> list[Route]:
        return [Route(PATH, self.handle, methods=["POST"])]

    async def handle(self, request: Request) -> Response:
        fault = await self.sandbox.fault("itniotech")
        ledger = self.sandbox.ledger
        if fault == "fail":
            ledger.add(PROVIDER, "sendGroup", None, f"http:{NOT_PLACED}", False)
            return error_page(NOT_PLACED)
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        failure = self._auth(request) or body_failure(body) or self._seeded(body)
        if failure is not None:
            ledger.add(PROVIDER, "sendGroup", None, failure["status"], False)
            return JSONResponse(failure)
        request_id = self.sandbox.new_ref("R")
        callees = [callee for callee in str(body["callee"]).split(",") if callee]
        data = [self._call(callee, body, request_id) for callee in callees]
        if fault == "timeout":
            await self.sandbox.hold()
        if fault == "error":
            return error_page(AFTER_PLACING)
        return JSONResponse({"status": "0", "reason": "success", "data": data})

    def _auth(self, request: Request) -> dict[str, Any] | None:
        cfg = self.sandbox.config
        key = request.headers.get("Api-Key", "")
        stamp = request.headers.get("Timestamp", "")
        if key != cfg.itniotech_api_key:
            return refused("-1", "账号认证异常")
        if not stamp.isdigit() or not self.sandbox.stamp_fresh(int(stamp)):
            return refused("-16", "时间戳过期")
        if request.headers.get("Sign", "") != sign(key, cfg.itniotech_api_secret, stamp):
            return refused("-1", "账号认证异常")
        return None

    def _seeded(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A seeded status (``-10``…) refuses the whole request; other seeded codes are a
        callee's ``terminationCode`` (see :meth:`_call`)."""
        for callee in str(body["callee"]).split(","):
            code = self.sandbox.refusal_for(callee)
            if code is not None and code.startswith("-"):
                return refused(code, "seeded refusal")
        return None

    def _call(self, callee: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        seen = {
            "request": request_id,
            "template": body.get("fileId"),
            "options": {
                k: body[k]
                for k in ("displayNum", "maxDuration", "maxRingingTime", "loopCount")
                if k in body
            },
        }
        code = self.sandbox.refusal_for(callee)
        if code is not None:
            self.sandbox.ledger.add(PROVIDER, "sendGroup", callee, code, False, **seen)
            return {
                "voiceId": "",
                "callee": callee,
                "terminationCode": code,
                "terminationReason": "invalid number" if code == INVALID_CALLEE else "refused",
            }
        voice_id = self.sandbox.new_ref()
        self.sandbox.ledger.add(PROVIDER, "sendGroup", callee, "0", True, ref=voice_id, **seen)
        self._schedule_result(voice_id, callee)
        return {
            "voiceId": voice_id,
            "callee": callee,
            "terminationCode": "0",
            "terminationReason": "success",
        }

    def _schedule_result(self, voice_id: str, callee: str) -> None:
        """The call's result, pushed on its own once the call is over (one object: the
        shape of a single result; the receiver reads arrays too)."""
        url = self.sandbox.config.itniotech_receipt_url
        if not url:
            return
        status, reason, seconds = CALL_STATUS[self.sandbox.outcome_for(callee)]
        result = {
            "voiceId": voice_id,
            "callee": callee,
            "status": status,
            "reason": reason,
            "duration": seconds,
            "endTime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.sandbox.now())),
        }
        self.sandbox.later(
            self.sandbox.config.receipt_delay, lambda: self.sandbox.push(url, json=result)
        )
