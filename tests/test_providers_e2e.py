"""Every provider end to end: ``notifyq send PROVIDER …`` → the store → Redis → a real
Celery worker → the provider's emulator over HTTP → ``sent``; then the receipt: jumdata's
callback and the (ASSUMED) APISpace SMS and itniotech pushes to our API, APISpace
voice's report pulled (journalled first) — to ``delivered`` or ``undelivered``. Numbers
ending 0000 are seeded as not answered."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from providers.apispace import sms_ref
from store.schema import ReportPull
from tasks.enqueue import enqueue_many
from tasks.reports import pull_reports
from tasks.requests import SendRequest
from tasks.views import notification_view
from tests.conftest import System, assert_no_leaks, cli_together
from tests.services import wait_until

SANDBOX = ("--receipt-delay", "0.3", "--jumdata-window", "", "--outcome", "0000=no-answer")
VOICE_TEMPLATE = "1011340330258440200"
SMS_TEXT = "【Eolink】您的验证码是{$var}，5分钟内有效。"

VOICE = ("--template", VOICE_TEMPLATE)
JUM = ("--template", "1001")
ITNIO = ("--template", "12022022570cc.mp3")

SENDS = {
    "voice-ok": ("apispace-voice", "13800131111", *VOICE, "--param", "张三"),
    "voice-no": ("apispace-voice", "13800130000", *VOICE, "--param", "李四"),
    "jum-ok": ("jumdata", "13900131111", *JUM, "--param", "张三", "--option", "playTimes=2"),
    "jum-no": ("jumdata", "13900130000", *JUM, "--param", "李四"),
    "sms": ("apispace-sms", "15800001234", "--content", SMS_TEXT, "--param", "4821"),
    "sms-no": ("apispace-sms", "15800000000", "--content", SMS_TEXT, "--param", "9731"),
    "itnio": ("itniotech", "+91 98765 43210", *ITNIO, "--option", "loopCount=2"),
    "itnio-no": ("itniotech", "+91 98765 40000", *ITNIO),
}


NUMBERS = tuple(send[1] for send in SENDS.values())


def test_every_provider_sends_through_the_cli_and_ends_in_its_receipts_status(make_system) -> None:
    system: System = make_system().start(sandbox_args=SANDBOX)
    ids: dict[str, int] = {}
    output = ""
    # a `notifyq send` process each, all at once (as from eight shells)
    commands = [("send", provider, "--to", to, *rest) for provider, to, *rest in SENDS.values()]
    for label, sent in zip(SENDS, system.cli_many(*commands), strict=True):
        assert sent.returncode == 0, sent.stderr
        ids[label] = int(sent.stdout)
        output += sent.stdout + sent.stderr

    # pushed receipts (jumdata, APISpace SMS, itniotech): on their own
    pushed = {"jum-ok": "delivered", "jum-no": "undelivered", "sms": "delivered"}
    pushed |= {"sms-no": "undelivered", "itnio": "delivered", "itnio-no": "undelivered"}
    system.wait_for([ids[k] for k in pushed], {"delivered", "undelivered"})
    assert {label: system.status(ids[label]) for label in pushed} == pushed
    system.wait_for([ids["voice-ok"], ids["voice-no"]], {"sent"})

    # pulled reports (APISpace voice): a failed pull stores nothing and loses nothing;
    # a page journalled by a run that died before parsing it is parsed first
    runtime = system.runtime
    wait_until(lambda: _waiting(system) == 2, 10, what="2 reports filed")
    orphan = {"callId": "EARLIER-1", "code": "000", "voiceCode": "1000", "result": {}}
    runtime.receipts.journal("apispace-voice", json.dumps({"code": "0", "data": [orphan]}))
    system.sandbox_config(fail_rate=1.0)
    assert pull_reports(runtime) == 1
    system.sandbox_config(fail_rate=0.0)
    assert _waiting(system) == 2
    assert pull_reports(runtime) == 2
    assert _waiting(system) == 0
    assert (system.status(ids["voice-ok"]), system.status(ids["voice-no"])) == (
        "delivered",
        "undelivered",
    )
    with runtime.db.read() as conn:
        pulls = list(conn.execute(select(ReportPull).order_by(ReportPull.id)))
    assert [(p.reports, p.error is not None and p.error.startswith("http:503")) for p in pulls] == [
        (1, False),
        (None, True),
        (2, False),
        (0, False),  # pulled until a page came back empty
    ]
    assert json.loads(pulls[2].body)["code"] == "0"  # the raw body, committed before parsing
    assert runtime.receipts.unparsed_journal("apispace-voice") == []

    # the views `notifyq status --json` prints; the command itself shows one of them (a
    # process per view would only start the same code eight times)
    views = {label: notification_view(runtime.notifications, i) for label, i in ids.items()}
    shown = system.cli("status", str(ids["voice-no"]), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads(json.dumps(views["voice-no"], default=str))
    output += shown.stdout + shown.stderr
    voice_calls = {
        c["number"]: c for c in system.ledger("apispace-voice") if c["api"] == "voice-notify"
    }
    assert voice_calls["13800131111"]["fields"]["params"] == ["张三"]
    assert views["voice-ok"]["provider_ref"] == voice_calls["13800131111"]["ref"]
    assert views["voice-no"]["reason"] == "receipt:1001"

    jum_calls = {c["number"]: c for c in system.ledger("jumdata")}
    assert jum_calls["13900131111"]["fields"]["notifyData"] == str(ids["jum-ok"])
    assert jum_calls["13900131111"]["fields"]["playTimes"] == "2"
    assert jum_calls["13900130000"]["fields"]["playTimes"] is None
    assert views["jum-ok"]["provider_ref"] == jum_calls["13900131111"]["ref"]
    assert {p["url"] for p in system.sandbox_pushes() if p["ok"]} == {
        "jumdata",
        "apispace-sms",
        "itniotech",
    }

    sms_calls = {c["number"]: c for c in system.ledger("apispace-sms")}
    sms_call = sms_calls["15800001234"]
    assert sms_call["fields"]["content"] == SMS_TEXT.replace("{$var}", "4821")
    # one msgId a request, one reference a number: the msgId and a digest of the number
    assert views["sms"]["provider_ref"] == sms_ref(sms_call["ref"], "15800001234")
    assert views["sms-no"]["reason"] == "receipt:EXPIRED"

    itnio_calls = {c["number"]: c for c in system.ledger("itniotech")}
    itnio_call = itnio_calls["919876543210"]
    assert itnio_call["placed"] is True
    assert itnio_call["fields"]["options"] == {"loopCount": 2}
    assert views["itnio"]["provider_ref"] == itnio_call["ref"]
    assert views["itnio"]["to"] == "919****3210"
    assert views["itnio-no"]["reason"] == "receipt:1"

    assert_no_leaks(system.stack.logs() + output + json.dumps(views, ensure_ascii=False), NUMBERS)


def test_one_request_for_many_numbers_gets_each_numbers_own_receipt(make_system) -> None:
    """One SMS request (one ``msgId``) and one itniotech group call for two numbers each,
    through a real worker; the sandbox pushes the SMS reports as one array and the call
    results one by one, and each notification ends in its own number's status."""
    system: System = make_system().start(sandbox_args=SANDBOX)
    requests = [
        SendRequest("apispace-sms", "15800002222", content=SMS_TEXT, params=("1111",)),
        SendRequest("apispace-sms", "15800010000", content=SMS_TEXT, params=("2222",)),
        SendRequest("itniotech", "+919876512222", template="f.mp3"),
        SendRequest("itniotech", "+919876510000", template="f.mp3"),
    ]
    results = enqueue_many(requests, runtime=system.runtime)
    ids = [r.id for r in results]  # type: ignore[union-attr]
    system.wait_for(ids, {"delivered", "undelivered"})
    assert [system.status(i) for i in ids] == [
        "delivered",
        "undelivered",
        "delivered",
        "undelivered",
    ]

    sms_calls = system.ledger("apispace-sms")
    assert len(sms_calls) == 2 and len({c["ref"] for c in sms_calls}) == 1  # one request
    itnio_calls = system.ledger("itniotech")
    assert len({c["fields"]["request"] for c in itnio_calls}) == 1  # one group call
    refs = [system.runtime.notifications.get(i).provider_ref for i in ids]
    assert len(set(refs)) == 4
    pushes = [(p["url"], p["attempt"], p["ok"]) for p in system.sandbox_pushes()]
    assert sorted(pushes) == [
        ("apispace-sms", 1, True),
        ("itniotech", 1, True),
        ("itniotech", 1, True),
    ]
    assert system.runtime.receipts.pending() == 0
    assert_no_leaks(system.stack.logs(), tuple(r.to for r in requests))


def _waiting(system: System) -> int:
    return httpx.get(f"{system.sandbox_url}/_sandbox/reports", timeout=10).json()["waiting"]


BAD_INPUT = [
    ("apispace-voice", ["--to", "13800138000", "--template", "T-1"], "template"),
    (
        "apispace-voice",
        ["--to", "13800138000", "--template", "1", "--option", "allowedCallTime=9-21"],
        "options.allowedCallTime",
    ),
    (
        "apispace-sms",
        ["--to", "13800138000", "--content", "您的验证码是{$var}", "--param", "1"],
        "content",
    ),
    (
        "apispace-sms",
        ["--to", "13800138000", "--content", SMS_TEXT, "--param", "1", "--param", "2"],
        "params",
    ),
    ("jumdata", ["--to", "02151234529", "--template", "1001"], "to"),
    (
        "jumdata",
        ["--to", "13800138000", "--template", "1001", "--option", "playTimes=4"],
        "options.playTimes",
    ),
    ("itniotech", ["--to", "12345", "--template", "f.mp3"], "to"),
    (
        "itniotech",
        ["--to", "+919876543210", "--template", "f.mp3", "--option", "maxRingingTime=10"],
        "options.maxRingingTime",
    ),
]


@pytest.fixture(scope="module")
def refusals(
    tmp_path_factory: pytest.TempPathFactory, redis_base: str
) -> Iterator[list[tuple[subprocess.CompletedProcess[str], System]]]:
    """Each bad input of BAD_INPUT given to a `notifyq send` process of its own, with its
    own empty store; all the processes at once (their start-ups overlap)."""
    systems = []
    for case in range(len(BAD_INPUT)):
        directory = tmp_path_factory.mktemp(f"bad-input-{case}")
        systems.append(System(directory, redis_base, f"sqlite:///{directory / 'notifyq.db'}"))
    jobs = [
        (system, ("send", provider, *args))
        for (provider, args, _), system in zip(BAD_INPUT, systems, strict=True)
    ]
    yield list(zip(cli_together(jobs), systems, strict=True))
    for system in systems:
        system.close()


@pytest.mark.parametrize("case", range(len(BAD_INPUT)), ids=[f"{p}-{f}" for p, _, f in BAD_INPUT])
def test_bad_input_exits_2_naming_the_field_and_stores_nothing(
    refusals: list[tuple[subprocess.CompletedProcess[str], System]], case: int
) -> None:
    _, _, field = BAD_INPUT[case]
    refused, system = refusals[case]
    assert refused.returncode == 2
    assert refused.stdout == ""
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {field}:"), line
    assert system.runtime.notifications.count_by_status() == {}


def test_the_jumdata_callback_stores_once_and_refuses_what_is_not_one(make_system) -> None:
    system: System = make_system().start(workers=0)
    base = f"{system.api_url}/callbacks"
    token = system.env["NOTIFYQ_CALLBACK_TOKEN"]
    result = {
        "callId": "555",
        "callStatus": "0",
        "callStatusText": "成功",
        "callTime": "12",
        "notifyData": "7",
    }
    assert httpx.post(f"{base}/wrong/jumdata", data=result).status_code == 404
    for malformed in (
        {"callStatus": "0"},
        {"callId": "", "callStatus": "0"},
        {"callId": "1", "callStatus": ""},
    ):
        assert httpx.post(f"{base}/{token}/jumdata", data=malformed).status_code == 400
    assert (
        httpx.post(
            f"{base}/{token}/jumdata",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ).status_code
        == 400
    )
    assert system.runtime.receipts.pending() == 0

    for _ in range(2):  # the provider repeats a push it thinks failed
        ok = httpx.post(f"{base}/{token}/jumdata", data=result)
        assert (ok.status_code, ok.text) == (200, "success")
    as_json = httpx.post(
        f"{base}/{token}/jumdata", json={"callId": 556, "callStatus": 1, "callTime": 0}
    )
    assert (as_json.status_code, as_json.text) == (200, "success")
    assert system.runtime.receipts.pending() == 2


# -- the report pull reads "000" and stops only at an empty page -----------------------------------


def test_reports_are_pulled_until_a_page_comes_back_empty_whatever_its_size(make_system) -> None:
    system: System = make_system(apispace_report_page="50").start(workers=0, api=False)
    seeded = httpx.post(f"{system.sandbox_url}/_sandbox/reports/seed", json={"count": 35})
    assert seeded.json()["waiting"] == 35
    # the server hands back at most 10 a pull whatever count asks, and answers "000"
    system.sandbox_config(apispace_report_max=10, apispace_report_code="000")
    assert pull_reports(system.runtime) == 35
    assert _waiting(system) == 0
    pulls = [c for c in system.ledger("apispace-voice") if c["api"] == "report"]
    assert [c["fields"]["count"] for c in pulls] == [10, 10, 10, 5, 0]
    with system.runtime.db.read() as conn:
        journal = list(conn.execute(select(ReportPull).order_by(ReportPull.id)))
    assert [(p.reports, p.error) for p in journal] == [
        (10, None),
        (10, None),
        (10, None),
        (5, None),
        (0, None),
    ]
