"""docs/codes.md read as data: the one table of every documented provider code and its
outcome, which the tests walk through the clients (so the page and the code agree), and
the clients that answer each row as its provider would."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from providers.apispace import CODES as APISPACE_CODES
from providers.apispace import ApispaceSms, ApispaceVoice
from providers.base import Message, Outcome, Provider, Reply, SendResult
from providers.ihuyi import SUBMIT_CODES, Ihuyi
from providers.itniotech import CODES as ITNIOTECH_CODES
from providers.itniotech import Itniotech
from providers.jumdata import CODES as JUMDATA_CODES
from providers.jumdata import Jumdata

PAGE = Path(__file__).resolve().parents[2] / "docs" / "codes.md"


@dataclass(frozen=True)
class Row:
    section: str
    provider: str
    code: str
    meaning: str
    result: str
    notes: str


def _table_lines(section: str) -> list[list[str]]:
    """The cells of every table line of one ``## section`` ("" for the page's top), the
    header and the rule under it left out."""
    out: list[list[str]] = []
    current = ""
    header = True
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            continue
        if current != section or not line.startswith("|"):
            header = True
            continue
        if line.startswith("|---"):
            header = False
            continue
        if not header:
            out.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return out


def rows(section: str) -> list[Row]:
    """The rows of one ``## section`` of the page, in order."""
    return [Row(section, *cells[:5]) for cells in _table_lines(section)]


def outcomes(provider: str) -> dict[str, Outcome]:
    """A provider's sending codes → outcome, as the page states them."""
    return {r.code: Outcome(r.result) for r in rows("Sending") if r.provider == provider}


def actions() -> dict[Outcome, str]:
    """Outcome → what the page says happens to the notification (its first table)."""
    return {Outcome(cells[0]): cells[1] for cells in _table_lines("")}


def status_named(action: str) -> str | None:
    """The status an action's text names first (```sent```; …), None if it names none."""
    found = re.search(r"`([a-z_]+)`", action)
    return found[1] if found else None


def blocked_seconds(row: Row) -> float:
    """A capped row's "blocked N s" note."""
    return float(row.notes.split("blocked ")[1].split(" s")[0])


def bad_number_reason(row: Row) -> str | None:
    """A row's "suppresses the number (`why`)" note: the why, None without one."""
    found = re.search(r"suppresses the number \(`([a-z_-]+)`\)", row.notes)
    return found[1] if found else None


VOICE = Message(id=1, to="+8613800138000", template="1011340330258440200", params=("张三",))
SMS = Message(id=1, to="+8613800138000", content="【Eolink】您的验证码是{$var}。", params=("1",))
IHUYI = Message(id=1, to="+8613800138000", content="您的订单号是：9633。")
JUMDATA = Message(id=1, to="+8613800138000", template="1001")
ITNIOTECH = Message(id=1, to="+919876543210", template="f.mp3")

CLIENTS: dict[str, tuple[Provider, Message]] = {
    "apispace-voice": (ApispaceVoice(SecretStr("t"), "http://a.test", "http://r.test"), VOICE),
    "apispace-sms": (ApispaceSms(SecretStr("t"), "http://a.test"), SMS),
    "ihuyi": (Ihuyi("acct", SecretStr("key"), "https://ihuyi.test"), IHUYI),
    "jumdata": (Jumdata("app", SecretStr("s"), "https://jumdata.test", None), JUMDATA),
    "itniotech": (Itniotech(SecretStr("k"), SecretStr("s"), "app", "https://i.test"), ITNIOTECH),
}

TABLES: dict[str, dict[str, Any]] = {
    "apispace-voice": APISPACE_CODES,
    "apispace-sms": APISPACE_CODES,
    "ihuyi": SUBMIT_CODES,
    "jumdata": JUMDATA_CODES,
    "itniotech": ITNIOTECH_CODES,
}


def answer(provider: str, code: str) -> Reply:
    """The body this provider documents, carrying ``code`` (and, for a success, the
    reference the provider's document gives)."""
    body: dict[str, Any]
    if provider == "apispace-voice":
        body = {"code": code, "desc": "d", "callId": "YYTZ1"}
    elif provider == "apispace-sms":
        body = {"code": code, "desc": "d", "data": {"msgId": "M1"}}
    elif provider == "ihuyi":
        body = {"code": int(code), "msg": "m", "voiceid": "60495654" if code == "2" else "0"}
    elif provider == "jumdata":
        body = {"code": int(code), "msg": "m", "taskNo": "1", "data": {"callId": "12121212"}}
    else:
        entry = {"voiceId": "v1", "callee": "919876543210", "terminationCode": "0"}
        body = {"status": code, "reason": "r", "data": [entry]}
    return Reply(200, json.dumps(body, ensure_ascii=False).encode())


def answered(row: Row, message_id: int) -> SendResult:
    """What the row's provider client makes of an answer carrying the row's code, for the
    message ``message_id``."""
    client, message = CLIENTS[row.provider]
    (result,) = client.send_results([message], answer(row.provider, row.code))
    return replace(result, message_id=message_id)
