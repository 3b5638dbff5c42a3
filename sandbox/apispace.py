"""APISpace emulated: voice notification (one number and batch), SMS verification codes,
and the pull-and-delete voice report store.

- ``POST /notify-vocie/voice-notify`` and ``/notify-vocie/voice-notify-batch`` (form):
  checks the numbers (a batch of at most 1000, every one an 11-digit mobile or a
  landline as 0 + area code + number, or the whole request is ``001`` and nothing is
  placed), the numeric template id and ``allowedCallTime``; places the calls; each
  accepted call files a report ``receipt_delay × time_scale`` later.
- ``POST /sms-code/verifycode`` (JSON): checks ``msg`` by the seed's signature and
  template rules and ``params`` (``mobile,value;…``); sends one SMS per number and,
  ``receipt_delay × time_scale`` later, pushes the request's delivery reports as one
  JSON array to ``apispace_sms_receipt_url`` (the ASSUMED push of
  ``providers/apispace.py``), repeating it up to 3 times until it hears ``success``.
- ``GET /api/voice/report?count=N`` (default 10): pops the N oldest reports (at most
  ``apispace_report_max`` when set: the seed promises no page size) and deletes them,
  answering ``apispace_report_code`` (``"0"`` as the seed's example, or ``"000"`` as its
  code table) — a timeout fault pops them *and then* holds, so the client loses them,
  as the real endpoint would. The store keeps at most 1,000,000 reports for 72 hours.
- ``POST /_sandbox/reports/seed`` ``{"count": N, "start": k}`` (a control, not APISpace):
  files N reports at once for the call ids ``seeded_call_id(k)`` … ``seeded_call_id(k+N-1)``,
  every tenth unanswered, so a benchmark can put that many calls ``sent`` in the
  ledger under the same ids and time the pull (``bench/reports.py``).

A refusal seeded for a number (``SandboxConfig.refusals``) answers the whole request
with that code, since APISpace's codes are per request.

ASSUMED (the seeds name no code for it): a missing or wrong ``X-APISpace-Token`` or
``Authorization-Type`` is answered ``003`` — the one authorisation failure APISpace
documents — on every endpoint. Report ``voiceCode`` values other than ``1000`` (played)
are the sandbox's own: 1001 no answer, 1002 busy, 1003 vacant, 1004 off, 1005 rejected;
so are the undelivered SMS statuses (:data:`SMS_STATUS`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.seeds import AFTER_PLACING, NOT_PLACED, error_page, mainland_mobile
from sandbox.seeds import mainland_number as valid_voice_number
from sandbox.state import Sandbox

VOICE, SMS = "apispace-voice", "apispace-sms"
#: the seeds' paths (sic, "vocie"); the batch path is the spec's ASSUMED one
VOICE_PATH = "/notify-vocie/voice-notify"
BATCH_PATH = "/notify-vocie/voice-notify-batch"
SMS_PATH = "/sms-code/verifycode"
REPORT_PATH = "/api/voice/report"
#: "count: 单次调用接口得到的报告数量，默认为10"
DEFAULT_REPORT_COUNT = 10
#: numbers one batch request may carry (the spec's ASSUMED figure)
MAX_BATCH = 1000
#: allowedCallTime, ASSUMED HH:MM-HH:MM
WINDOW = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]|24):[0-5]\d$")
PLACEHOLDER = "{$var}"
#: the signature rules: "字数要求2-20个字符", "不能使用空格和特殊符号"- + * & % # @ ~""
SIGNATURE = re.compile(r"^【([^【】\s\-+*&%#@~]{2,20})】")
KEEP_REPORTS = 1_000_000
KEEP_SECONDS = 72 * 3600.0

VOICE_CODES = {
    "answered": ("1000", "语音播放成功"),
    "no-answer": ("1001", "无人接听"),
    "busy": ("1002", "用户忙"),
    "vacant": ("1003", "空号"),
    "off": ("1004", "关机"),
    "rejected": ("1005", "用户拒接"),
}


#: outcome kind → the SMPP-style status an SMS report carries (only DELIVRD is delivered)
SMS_STATUS = {
    "answered": ("DELIVRD", "用户已成功收到短信"),
    "no-answer": ("EXPIRED", "短信已过期"),
    "busy": ("UNDELIV", "短信未送达"),
    "vacant": ("MK:0001", "空号"),
    "off": ("MK:0005", "关机"),
    "rejected": ("REJECTD", "短信被拒绝"),
}


def refused(code: str, desc: str) -> dict[str, Any]:
    return {"code": code, "desc": desc}


def segments(text: str) -> int:
    """ "短信字数 <=70个字，按照70个字一条 … >70个字 … 按照67个字记为一条"."""
    return 1 if len(text) <= 70 else math.ceil(len(text) / 67)


def text_refused(msg: str) -> bool:
    """The seed's rules a text must meet: the 【signature】 first, a code placeholder,
    and "内容首尾不能添加【】" beyond the signature."""
    match = SIGNATURE.match(msg)
    if match is None:
        return True
    body = msg[match.end() :]
    return PLACEHOLDER not in body or body.startswith("【") or body.rstrip().endswith("】")


def seeded_call_id(n: int) -> str:
    """The call id of the n-th seeded report (``POST /_sandbox/reports/seed``)."""
    return f"YYTZSEED{n:010d}"


def seeded_kind(n: int) -> str:
    """Every tenth seeded call went unanswered; the rest were played."""
    return "no-answer" if n % 10 == 0 else "answered"


class ReportStore:
    """Reports waiting to be pulled, oldest first: at most 1,000,000, none past 72 h."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.waiting: deque[tuple[float, dict[str, Any]]] = deque()
        self.clock = clock

    def _prune(self, now: float) -> None:
        while len(self.waiting) > KEEP_REPORTS:
            self.waiting.popleft()
        while self.waiting and self.waiting[0][0] < now - KEEP_SECONDS:
            self.waiting.popleft()

    def add(self, report: dict[str, Any]) -> None:
        self.extend([report])

    def extend(self, reports: list[dict[str, Any]]) -> None:
        now = self.clock()
        self.waiting.extend((now, report) for report in reports)
        self._prune(now)

    def pop(self, count: int) -> list[dict[str, Any]]:
        self._prune(self.clock())
        return [self.waiting.popleft()[1] for _ in range(min(count, len(self.waiting)))]

    def __len__(self) -> int:
        self._prune(self.clock())
        return len(self.waiting)


class ApispaceEmulator:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.reports = ReportStore(sandbox.now)

    def routes(self) -> list[Route]:
        return [
            Route(VOICE_PATH, self.voice, methods=["POST"]),
            Route(BATCH_PATH, self.voice, methods=["POST"]),
            Route(SMS_PATH, self.sms, methods=["POST"]),
            Route(REPORT_PATH, self.report, methods=["GET"]),
            Route("/_sandbox/reports/seed", self.seed, methods=["POST"]),
        ]

    def _authorised(self, request: Request) -> bool:
        headers = request.headers
        return (
            headers.get("X-APISpace-Token") == self.sandbox.config.apispace_token
            and headers.get("Authorization-Type") == "apikey"
        )

    # -- voice ------------------------------------------------------------------------

    async def voice(self, request: Request) -> Response:
        batch = request.url.path.endswith(BATCH_PATH)
        api = "voice-notify-batch" if batch else "voice-notify"
        fields = {k: str(v) for k, v in (await request.form()).items()}
        numbers = [n.strip() for n in fields.get("mobile", "").split(",") if n.strip()]
        fault = await self.sandbox.fault(VOICE)
        ledger = self.sandbox.ledger
        if fault == "fail":
            number = numbers[0] if len(numbers) == 1 else None
            ledger.add(VOICE, api, number, f"http:{NOT_PLACED}", False)
            return error_page(NOT_PLACED)
        failure = self._voice_failure(request, fields, numbers, batch)
        if failure is not None:
            number = numbers[0] if len(numbers) == 1 else None
            ledger.add(VOICE, api, number, failure["code"], False, count=len(numbers))
            return JSONResponse(failure)
        placed = [(number, self._place(api, number, fields)) for number in numbers]
        if fault == "timeout":
            await self.sandbox.hold()
        if fault == "error":
            return error_page(AFTER_PLACING)
        if not batch:
            return JSONResponse({"code": "000", "desc": "成功", "callId": placed[0][1]})
        data = [{"mobile": number, "callId": call_id} for number, call_id in placed]
        return JSONResponse({"code": "000", "desc": "成功", "data": data})

    def _voice_failure(
        self, request: Request, fields: Mapping[str, str], numbers: list[str], batch: bool
    ) -> dict[str, Any] | None:
        if not self._authorised(request):
            return refused("003", "鉴权失败")
        if not numbers or (not batch and len(numbers) != 1) or len(numbers) > MAX_BATCH:
            return refused("001", "参数校验错误: mobile")
        if not all(valid_voice_number(n) for n in numbers):
            return refused("001", "参数校验错误: mobile")
        if not fields.get("templateId", "").isdigit():
            return refused("001", "参数校验错误: templateId")
        window = fields.get("allowedCallTime", "")
        if window and not WINDOW.match(window):
            return refused("001", "参数校验错误: allowedCallTime")
        return self._seeded(numbers)

    def _seeded(self, numbers: list[str]) -> dict[str, Any] | None:
        """A refusal a test seeded for any number of the request (codes are per request)."""
        for number in numbers:
            code = self.sandbox.refusal_for(number)
            if code is not None:
                return refused(code, "seeded refusal")
        return None

    def _place(self, api: str, number: str, fields: Mapping[str, str]) -> str:
        call_id = self.sandbox.new_ref("YYTZ")
        param = fields.get("param", "")
        self.sandbox.ledger.add(
            VOICE,
            api,
            number,
            "000",
            True,
            ref=call_id,
            template=fields.get("templateId"),
            params=param.split(",") if param else [],
            transData=fields.get("transData", ""),
        )
        kind = self.sandbox.outcome_for(number)

        async def file_report() -> None:
            self.reports.add(self._report(call_id, number, kind))

        self.sandbox.later(self.sandbox.config.receipt_delay, file_report)
        return call_id

    def _report(self, call_id: str, number: str, kind: str) -> dict[str, Any]:
        voice_code, voice_desc = VOICE_CODES[kind]
        now_ms = int(self.sandbox.now() * 1000)
        answered = kind == "answered"
        return {
            "callId": call_id,
            "code": "000",
            "desc": "成功",
            "voiceCode": voice_code,
            "voiceCodeDesc": voice_desc,
            "result": {
                "timeLength": 5 if answered else 0,
                "answerTime": str(now_ms - 5000) if answered else "",
                "invokeTime": str(now_ms - 12000),
                "mobile": number,
                "callTime": str(now_ms - 9000),
                "callType": "0",
                "byeTime": str(now_ms),
            },
        }

    # -- reports ------------------------------------------------------------------------

    async def report(self, request: Request) -> Response:
        fault = await self.sandbox.fault(VOICE)
        if fault in ("fail", "error"):
            self.sandbox.ledger.add(VOICE, "report", None, f"http:{NOT_PLACED}", False)
            return error_page(NOT_PLACED)
        if not self._authorised(request):
            self.sandbox.ledger.add(VOICE, "report", None, "003", False)
            return JSONResponse(refused("003", "鉴权失败"))
        raw = request.query_params.get("count", str(DEFAULT_REPORT_COUNT))
        if not raw.isdigit() or int(raw) < 1:
            self.sandbox.ledger.add(VOICE, "report", None, "001", False)
            return JSONResponse(refused("001", "参数校验错误: count"))
        most = self.sandbox.config.apispace_report_max
        pulled = self.reports.pop(min(int(raw), most) if most > 0 else int(raw))
        code = self.sandbox.config.apispace_report_code
        self.sandbox.ledger.add(VOICE, "report", None, code, False, count=len(pulled))
        if fault == "timeout":
            await self.sandbox.hold()  # popped and gone: the client never sees them
        # the same compact JSON JSONResponse writes, by orjson: a page of a thousand
        # reports in 0.4 ms, not 2.4 ms of this emulator's CPU on the machine whose
        # ingest bench/reports.py times (a real provider encodes on its own servers)
        return Response(orjson.dumps({"code": code, "data": pulled}), media_type="application/json")

    async def seed(self, request: Request) -> Response:
        """A control: file ``count`` reports for the seeded call ids from ``start`` on."""
        try:
            body = await request.json()
            count, start = int(body["count"]), int(body.get("start", 0))
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'give {"count": N, "start": k}'}, status_code=400)
        if not 0 < count <= KEEP_REPORTS or start < 0:
            return JSONResponse({"error": f"count is 1 to {KEEP_REPORTS}"}, status_code=400)
        self.reports.extend(
            [
                self._report(seeded_call_id(n), f"13{n % 10**9:09d}", seeded_kind(n))
                for n in range(start, start + count)
            ]
        )
        return JSONResponse({"seeded": count, "waiting": len(self.reports)})

    # -- SMS ----------------------------------------------------------------------------

    async def sms(self, request: Request) -> Response:
        fault = await self.sandbox.fault(SMS)
        if fault == "fail":
            self.sandbox.ledger.add(SMS, "verifycode", None, f"http:{NOT_PLACED}", False)
            return error_page(NOT_PLACED)
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        failure, pairs = self._sms_failure(request, body)
        if failure is not None:
            self.sandbox.ledger.add(SMS, "verifycode", None, failure["code"], False)
            return JSONResponse(failure)
        assert isinstance(body, dict)
        msg_id = self.sandbox.new_ref("SMS")
        for number, value in pairs:
            text = str(body["msg"]).replace(PLACEHOLDER, value)
            self.sandbox.ledger.add(
                SMS,
                "verifycode",
                number,
                "000",
                True,
                ref=msg_id,
                content=text,
                params=[value],
                segments=segments(text),
            )
        self._schedule_sms_reports(msg_id, [number for number, _ in pairs])
        if fault == "timeout":
            await self.sandbox.hold()
        if fault == "error":
            return error_page(AFTER_PLACING)
        return JSONResponse({"code": "000", "desc": "成功", "data": {"msgId": msg_id}})

    def _schedule_sms_reports(self, msg_id: str, numbers: list[str]) -> None:
        """One push for the whole request, a report per number: the array form of the
        assumed push, so a receiver must take several receipts in one body."""
        url = self.sandbox.config.apispace_sms_receipt_url
        if not url:
            return
        reports = []
        for number in numbers:
            status, desc = SMS_STATUS[self.sandbox.outcome_for(number)]
            reports.append(
                {
                    "msgId": msg_id,
                    "mobile": number,
                    "status": status,
                    "desc": desc,
                    "reportTime": time.strftime(
                        "%Y-%m-%d %H:%M:%S", time.localtime(self.sandbox.now())
                    ),
                }
            )
        self.sandbox.later(
            self.sandbox.config.receipt_delay, lambda: self.sandbox.push(url, json=reports)
        )

    def _sms_failure(
        self, request: Request, body: Any
    ) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        if not self._authorised(request):
            return refused("003", "鉴权失败"), []
        if not isinstance(body, dict):
            return refused("001", "参数校验错误: body"), []
        msg = str(body.get("msg") or "")
        if not msg or text_refused(msg):
            return refused("001", "参数校验错误: msg"), []
        pairs = []
        for item in str(body.get("params") or "").split(";"):
            number, _, value = item.partition(",")
            if not mainland_mobile(number.strip()) or not value.strip():
                return refused("001", "参数校验错误: params"), []
            pairs.append((number.strip(), value.strip()))
        if len(pairs) > MAX_BATCH:
            return refused("001", "参数校验错误: params"), []
        return self._seeded([number for number, _ in pairs]), pairs
