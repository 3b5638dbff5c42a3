"""jumdata emulated: ``GET|POST /voice-notify/send`` and the call-result callback.

Checks ``sign = sha256(appId + appSecret + timestamp)`` and the millisecond time stamp's
freshness, the 11-digit mobile, the template id and ``playTimes`` (1–3); enforces the
provider's own rules on arrival — the calling window (``SandboxConfig.jumdata_window``,
Beijing time; ``""`` = always), and at most 3 calls a number in a rolling 24 h, after
which the number is blocked and *every* further attempt restarts the block to 24 h from
that attempt — and pushes the result (form) to ``notifyUrl`` with ``notifyData``
echoed, retried as ihuyi's pushes are (3 tries, the wait growing by 60 s).

ASSUMED (the seed names no code for these; the client module decides the same):
blocked → ``605``, outside the window → ``606``; an unknown ``appId``, a wrong ``sign``
or a stale time stamp → ``601`` (the account cannot use the API as called); a missing
or malformed field → ``400``. The block is checked before the window, so an attempt
made at night on a blocked number still extends its block (the strict reading).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.seeds import (
    AFTER_PLACING,
    NOT_PLACED,
    error_page,
    mainland_mobile,
    sha256_hex,
)
from sandbox.state import Sandbox, SlidingCounter

PATH = "/voice-notify/send"
#: "播放次数,最大3次"
MAX_PLAY_TIMES = 3
#: "限制期间在呼叫就从最后一次呼叫开始在计算24小时后才能解除"
BLOCK_SECONDS = 86400.0
#: the codes the seed does not name, ASSUMED alike here and in docs/codes.md
BLOCKED_CODE, WINDOW_CODE = "605", "606"


def sign(app_id: str, app_secret: str, timestamp: str) -> str:
    """ "sign = sha256(appId + appSecret + timestamp)"."""
    return sha256_hex(app_id, app_secret, timestamp)


PROVIDER = "jumdata"
BEIJING = ZoneInfo("Asia/Shanghai")
CALLS_PER_DAY = 3
DAY = 86400.0


def in_window(window: str, now: float) -> bool:
    """``"09:00-21:00"`` in Beijing time (``"21:00-09:00"`` runs over midnight);
    ``""`` is always open."""
    if not window.strip():
        return True
    start, end = (_minutes(part) for part in window.split("-", 1))
    local = datetime.fromtimestamp(now, BEIJING)
    minute = local.hour * 60 + local.minute
    if start <= end:
        return start <= minute < end
    return minute >= start or minute < end


def _minutes(text: str) -> int:
    hours, _, minutes = text.strip().partition(":")
    return int(hours) * 60 + int(minutes or 0)


def refused(code: int | str, msg: str) -> dict[str, Any]:
    return {"code": int(code), "msg": msg}


class JumdataEmulator:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.calls = SlidingCounter(keep=DAY)
        self.blocked_until: dict[str, float] = {}

    def routes(self) -> list[Route]:
        return [Route(PATH, self.handle, methods=["GET", "POST"])]

    async def handle(self, request: Request) -> Response:
        fields: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            fields.update({k: str(v) for k, v in (await request.form()).items()})
        fault = await self.sandbox.fault("jumdata")
        if fault == "fail":
            self.sandbox.ledger.add(
                PROVIDER, "send", fields.get("mobile"), f"http:{NOT_PLACED}", False
            )
            return error_page(NOT_PLACED)
        answer = self.send(fields)
        if fault == "timeout":
            await self.sandbox.hold()
        if fault == "error":
            return error_page(AFTER_PLACING)
        return JSONResponse(answer)

    def send(self, fields: dict[str, str]) -> dict[str, Any]:
        mobile = fields.get("mobile", "")
        param = fields.get("param", "")
        seen = {
            "template": fields.get("templateId"),
            "params": param.split(",") if param else [],
            "playTimes": fields.get("playTimes"),
            "notifyData": fields.get("notifyData"),
        }
        now = self.sandbox.now()
        failure = (
            self._auth(fields, time.time()) or self._check(fields) or self._limits(mobile, now)
        )
        if failure is not None:
            self.sandbox.ledger.add(
                PROVIDER, "send", mobile or None, str(failure["code"]), False, **seen
            )
            return failure
        self.calls.add(mobile, now)
        call_id = self.sandbox.new_ref()
        self.sandbox.ledger.add(PROVIDER, "send", mobile, "200", True, ref=call_id, **seen)
        self._schedule_callback(fields, mobile, call_id)
        return {
            "code": 200,
            "msg": "成功",
            "taskNo": self.sandbox.new_ref("T"),
            "data": {"callId": call_id},
        }

    def _auth(self, fields: dict[str, str], now: float) -> dict[str, Any] | None:
        cfg = self.sandbox.config
        app_id, stamp, signed = (fields.get(k, "") for k in ("appId", "timestamp", "sign"))
        if not app_id or not stamp or not signed:
            return refused(400, "参数错误: appId, timestamp, sign")
        if app_id != cfg.jumdata_app_id:
            return refused(601, "接口未开通")
        if not stamp.isdigit() or abs(now * 1000 - int(stamp)) > cfg.stamp_tolerance * 1000:
            return refused(601, "时间戳过期")
        if signed != sign(app_id, cfg.jumdata_app_secret, stamp):
            return refused(601, "签名错误")
        return None

    def _check(self, fields: dict[str, str]) -> dict[str, Any] | None:
        mobile = fields.get("mobile", "")
        if not mainland_mobile(mobile):
            return refused(400, "手机号格式不正确")
        if not fields.get("templateId", "").strip():
            return refused(400, "模版Id不能为空")
        play_times = fields.get("playTimes", "")
        if play_times and not (play_times.isdigit() and 1 <= int(play_times) <= MAX_PLAY_TIMES):
            return refused(400, "播放次数最大3次")
        seeded = self.sandbox.refusal_for(mobile)
        return None if seeded is None else refused(seeded, "seeded refusal")

    def _limits(self, mobile: str, now: float) -> dict[str, Any] | None:
        if self.blocked_until.get(mobile, 0.0) > now or (
            self.calls.count(mobile, DAY, now) >= CALLS_PER_DAY
        ):
            self.blocked_until[mobile] = now + BLOCK_SECONDS  # every attempt restarts it
            return refused(BLOCKED_CODE, "该号码呼叫次数超限,已被限制,24小时后解除")
        if not in_window(self.sandbox.config.jumdata_window, now):
            return refused(WINDOW_CODE, "不在呼叫时间内(09:00-21:00)")
        return None

    def _schedule_callback(self, fields: dict[str, str], mobile: str, call_id: str) -> None:
        url = fields.get("notifyUrl")
        if not url:
            return
        answered = self.sandbox.outcome_for(mobile) == "answered"
        form = {
            "callId": call_id,
            "callStatus": "0" if answered else "1",
            "callStatusText": "成功" if answered else "失败",
            "callTime": "12" if answered else "0",
            "notifyData": fields.get("notifyData", ""),
        }
        self.sandbox.later(self.sandbox.config.receipt_delay, lambda: self.sandbox.push(url, form))
