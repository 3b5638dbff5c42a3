"""The clients against their emulators over real HTTP:
a ``notifyq sandbox`` process, the real transport, and the dispatcher's own grouping
(``call_providers``), so batches split past 1000 exactly as the workers split them."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import time_machine
from pydantic import SecretStr

from config.settings import Settings
from providers import registry
from providers.apispace import ApispaceVoice
from providers.base import Message, Outcome, Provider, SendResult, UnreadableReply
from providers.http import HttpSettings, Transport
from providers.ihuyi import Ihuyi
from providers.jumdata import BLOCKED_CODE, Jumdata
from sandbox.jumdata import JumdataEmulator
from sandbox.state import Sandbox, SandboxConfig
from tasks.calls import call_providers
from tests.conftest import TEST_CREDENTIALS
from tests.providers.codes_doc import rows
from tests.services import Stack, free_port, wait_until


class Box:
    """A running sandbox and clients pointed at it."""

    def __init__(self, url: str, providers: dict[str, Provider]) -> None:
        self.url = url
        self.providers = providers
        self.transport = Transport()

    def send(
        self, name: str, messages: list[Message], now: float | None = None
    ) -> list[SendResult]:
        provider = self.providers[name]
        reply = self.transport.perform(
            provider.build_send(messages, time.time() if now is None else now)
        )
        assert not hasattr(reply, "sent"), reply
        return provider.send_results(messages, reply)  # type: ignore[arg-type]

    def dispatch(self, name: str, messages: list[Message]) -> list[SendResult]:
        """The dispatcher's grouping, batching and calling, on plain rows."""

        runtime = SimpleNamespace(providers=self.providers, transport=self.transport)
        rows = [SimpleNamespace(provider=name, priority="normal", **vars_of(m)) for m in messages]
        return call_providers(runtime, rows).results  # type: ignore[arg-type]

    def ledger(self, provider: str) -> list[dict[str, Any]]:
        return httpx.get(
            f"{self.url}/_sandbox/calls", params={"provider": provider}, timeout=30
        ).json()["calls"]

    def config(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/_sandbox/config", json=changes, timeout=10).raise_for_status()

    def waiting_reports(self) -> int:
        return httpx.get(f"{self.url}/_sandbox/reports", timeout=10).json()["waiting"]


def vars_of(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "to": m.to,
        "template": m.template,
        "content": m.content,
        "params": list(m.params),
        "options": dict(m.options),
    }


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**TEST_CREDENTIALS}
    env.pop("NOTIFYQ_CALLBACK_TOKEN")  # no receiver here: jumdata gets no notifyUrl
    stack = Stack(tmp_path, env)
    stack.sandbox(port, "--receipt-delay", "0.1", "--jumdata-window", "")
    values = {k.removeprefix("NOTIFYQ_").lower(): v for k, v in env.items()}
    for name in ("apispace", "apispace_report", "jumdata", "itniotech", "ihuyi"):
        values[f"{name}_base_url"] = url
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    sandbox = Box(url, registry.build_all(settings))
    yield sandbox
    sandbox.transport.close()
    stack.stop()


def mobiles(count: int, prefix: str = "+86138") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(count)]


VOICE_TEMPLATE = "1011340330258440200"


# -- APISpace -----------------------------------------------------------------------------


def test_apispace_voice_past_1000_numbers_is_one_batch_of_1000_and_one_single_call(
    box: Box,
) -> None:
    messages = [
        Message(id=i, to=n, template=VOICE_TEMPLATE, params=("张三",))
        for i, n in enumerate(mobiles(1001))
    ]
    results = box.dispatch("apispace-voice", messages)
    assert Counter(r.outcome for r in results) == {Outcome.ACCEPTED: 1001}
    assert len({r.ref for r in results}) == 1001
    calls = box.ledger("apispace-voice")
    assert Counter(c["api"] for c in calls) == {"voice-notify-batch": 1000, "voice-notify": 1}
    assert all(c["placed"] and c["fields"]["params"] == ["张三"] for c in calls)
    assert {c["number"] for c in calls} == {n.removeprefix("+86") for n in mobiles(1001)}


def test_apispace_reports_are_pulled_in_pages_and_never_twice(box: Box) -> None:
    box.config(outcomes={"0000": "no-answer"})
    numbers = ["+8613800130000", "+8613800131111", "+8613800132222"]
    results = box.dispatch(
        "apispace-voice",
        [Message(id=i, to=n, template=VOICE_TEMPLATE) for i, n in enumerate(numbers)],
    )
    refs = {r.ref for r in results}
    wait_until(lambda: box.waiting_reports() == 3, 10, what="3 reports filed")
    voice: ApispaceVoice = box.providers["apispace-voice"]  # type: ignore[assignment]
    pages = []
    for _ in range(3):
        reply = box.transport.perform(voice.report_call(2))
        pages.append(voice.read_report(reply))  # type: ignore[arg-type]
    assert [p.size for p in pages] == [2, 1, 0]
    receipts = [r for p in pages for r in p.receipts]
    assert {r.ref for r in receipts} == refs
    undelivered = {r.ref for r in receipts if not r.delivered}
    assert undelivered == {results[0].ref}
    assert box.waiting_reports() == 0
    pulls = [c for c in box.ledger("apispace-voice") if c["api"] == "report"]
    assert [(c["placed"], c["fields"]["count"]) for c in pulls] == [
        (False, 2),
        (False, 1),
        (False, 0),
    ]


def test_apispace_with_a_wrong_token_is_an_account_problem(box: Box) -> None:
    wrong = ApispaceVoice(SecretStr("not-the-token"), box.url, box.url)
    message = Message(id=1, to="+8613800138000", template=VOICE_TEMPLATE)
    reply = box.transport.perform(wrong.build_send([message], time.time()))
    (result,) = wrong.send_results([message], reply)  # type: ignore[arg-type]
    assert (result.outcome, result.code) == (Outcome.ACCOUNT, "003")
    with pytest.raises(UnreadableReply, match="003"):
        wrong.read_report(box.transport.perform(wrong.report_call(10)))  # type: ignore[arg-type]
    assert not any(c["placed"] for c in box.ledger("apispace-voice"))


def test_apispace_sms_carries_each_numbers_own_code_in_one_request(box: Box) -> None:
    text = "【Eolink】您的验证码是{$var}，5分钟内有效。"
    messages = [
        Message(id=1, to="+8615800000000", content=text, params=("1234",)),
        Message(id=2, to="+8613800000000", content=text, params=("4321",)),
    ]
    results = box.dispatch("apispace-sms", messages)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    calls = box.ledger("apispace-sms")
    assert {(c["number"], c["fields"]["content"]) for c in calls} == {
        ("15800000000", "【Eolink】您的验证码是1234，5分钟内有效。"),
        ("13800000000", "【Eolink】您的验证码是4321，5分钟内有效。"),
    }
    assert len({c["ref"] for c in calls}) == 1  # one request
    assert all(c["fields"]["segments"] == 1 for c in calls)


ONE_OF_EACH = {
    "apispace-voice": Message(id=1, to="+8613800138000", template=VOICE_TEMPLATE),
    "apispace-sms": Message(id=1, to="+8613800138000", content="【Eolink】码{$var}", params=("1",)),
    "ihuyi": Message(id=1, to="+8613800138000", content="您的快递已到。"),
    "jumdata": Message(id=1, to="+8613800138000", template="1001"),
    "itniotech": Message(id=1, to="+919876543210", template="f.mp3"),
}


@pytest.mark.parametrize("name", list(ONE_OF_EACH))
def test_a_provider_refusing_with_503_before_placing_anything_is_transient(
    box: Box, name: str
) -> None:
    box.config(fail_rate=1.0)
    (result,) = box.send(name, [ONE_OF_EACH[name]])
    assert (result.outcome, result.code) == (Outcome.TRANSIENT, "http:503")
    assert not any(c["placed"] for c in box.ledger(name))


@pytest.mark.parametrize("name", list(ONE_OF_EACH))
def test_an_http_500_after_the_call_was_placed_is_ambiguous_never_resent(
    box: Box, name: str
) -> None:
    box.config(error_first={name: 1})
    (result,) = box.send(name, [ONE_OF_EACH[name]])
    assert (result.outcome, result.code) == (Outcome.AMBIGUOUS, "http:500")
    assert [c["placed"] for c in box.ledger(name)] == [True]  # it was placed


# -- jumdata ------------------------------------------------------------------------------


def test_jumdata_refuses_a_fourth_call_in_a_day_as_a_block(box: Box) -> None:
    message = Message(id=1, to="+8613800138000", template="1001", params=("张三",))
    results = [box.send("jumdata", [message])[0] for _ in range(4)]
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3 + [Outcome.CAPPED]
    assert (results[3].code, results[3].block_seconds) == (BLOCKED_CODE, 86400)
    calls = box.ledger("jumdata")
    assert [(c["code"], c["placed"]) for c in calls] == [("200", True)] * 3 + [
        (BLOCKED_CODE, False)
    ]
    assert calls[0]["fields"]["notifyData"] == "1"


def test_jumdata_outside_its_window_is_deferred(box: Box) -> None:
    beijing_hour = time.gmtime(time.time() + 8 * 3600).tm_hour
    closed = f"{(beijing_hour + 2) % 24:02d}:00-{(beijing_hour + 3) % 24:02d}:00"
    box.config(jumdata_window=closed)
    (result,) = box.send("jumdata", [Message(id=1, to="+8613800138000", template="1001")])
    assert (result.outcome, result.code, result.block_seconds) == (Outcome.CAPPED, "606", 600)


def test_jumdata_refuses_a_stale_signature(box: Box) -> None:
    (result,) = box.send(
        "jumdata", [Message(id=1, to="+8613800138000", template="1001")], now=time.time() - 600
    )
    assert (result.outcome, result.code) == (Outcome.ACCOUNT, "601")


def jumdata_on_a_clock() -> Callable[[float], int]:
    """The emulator's own state on a travelling clock: attempt_at(seconds after start)."""
    emulator = JumdataEmulator(Sandbox(SandboxConfig(jumdata_app_id="a", jumdata_window="")))
    client = Jumdata("a", SecretStr(SandboxConfig().jumdata_app_secret), "http://unused", None)
    message = Message(id=1, to="+8613800138000", template="1001")
    start = 1_700_000_000.0

    def attempt_at(offset: float) -> int:
        with time_machine.travel(start + offset, tick=False):
            form = client.build_send([message], time.time()).form
            assert form is not None
            return emulator.send(dict(form))["code"]

    return attempt_at


def test_every_attempt_on_a_blocked_number_restarts_its_24_hours() -> None:
    attempt_at, hour = jumdata_on_a_clock(), 3600.0
    assert [attempt_at(0), attempt_at(1), attempt_at(2)] == [200, 200, 200]
    assert attempt_at(1 * hour) == 605  # blocked until 25 h
    assert attempt_at(24.5 * hour) == 605  # still blocked: now until 48.5 h
    assert attempt_at(48 * hour) == 605  # the block moved: now until 72 h
    assert attempt_at(72 * hour + 1) == 200


def test_a_block_left_alone_ends_24_hours_after_the_attempt_that_started_it() -> None:
    attempt_at = jumdata_on_a_clock()
    assert [attempt_at(t) for t in (0, 1, 2, 3600)] == [200, 200, 200, 605]
    assert attempt_at(3600 + 86400 + 1) == 200


# -- itniotech ----------------------------------------------------------------------------


def test_itniotech_answers_per_callee_and_calls_only_the_ones_it_takes(box: Box) -> None:
    box.config(refusals={"0000": "10001"})  # a callee the provider will not call
    messages = [
        Message(id=1, to="+919876543210", template="f.mp3"),
        Message(id=2, to="+447911120000", template="f.mp3"),
        Message(id=3, to="+447911123456", template="f.mp3"),
    ]
    results = box.send("itniotech", messages)
    assert [(r.message_id, r.outcome) for r in results] == [
        (1, Outcome.ACCEPTED),
        (2, Outcome.PERMANENT),
        (3, Outcome.ACCEPTED),
    ]
    assert results[1].code == "10001"
    calls = box.ledger("itniotech")
    assert [(c["number"], c["placed"]) for c in calls] == [
        ("919876543210", True),
        ("447911120000", False),
        ("447911123456", True),
    ]
    assert [c["ref"] for c in calls if c["placed"]] == [results[0].ref, results[2].ref]


def test_itniotech_refuses_a_callee_of_the_wrong_shape_for_the_whole_group(box: Box) -> None:
    messages = [
        Message(id=1, to="+919876543210", template="f.mp3"),
        Message(id=2, to="+441234", template="f.mp3"),  # 6 digits: bypassed validation
    ]
    results = box.send("itniotech", messages)
    assert {(r.outcome, r.code, r.splits) for r in results} == {(Outcome.PERMANENT, "-22", True)}
    assert not any(c["placed"] for c in box.ledger("itniotech"))


def test_itniotech_refuses_a_stale_timestamp_and_takes_a_fresh_one(box: Box) -> None:
    message = Message(id=1, to="+919876543210", template="f.mp3")
    (stale,) = box.send("itniotech", [message], now=time.time() - 301)
    assert (stale.outcome, stale.code) == (Outcome.TRANSIENT, "-16")
    (fresh,) = box.send("itniotech", [message])
    assert fresh.outcome is Outcome.ACCEPTED


def test_itniotech_past_1000_callees_is_two_requests(box: Box) -> None:
    numbers = [f"+9198765{i:05d}" for i in range(1001)]
    results = box.dispatch(
        "itniotech",
        [
            Message(id=i, to=n, template="f.mp3", options={"loopCount": 2})
            for i, n in enumerate(numbers)
        ],
    )
    assert Counter(r.outcome for r in results) == {Outcome.ACCEPTED: 1001}
    calls = box.ledger("itniotech")
    assert sorted(Counter(c["fields"]["request"] for c in calls).values()) == [1, 1000]
    assert all(c["fields"]["options"] == {"loopCount": 2} for c in calls)


# -- landlines, batches split to find a bad number, ihuyi's template calls -------------------------


def test_a_beijing_landline_is_called_by_ihuyi_and_apispace(box: Box) -> None:
    beijing = "+861065529988"
    (ihuyi,) = box.send("ihuyi", [Message(id=1, to=beijing, content="您的快递已到。")])
    assert ihuyi.outcome is Outcome.ACCEPTED, ihuyi
    batch = [
        Message(id=i, to=n, template=VOICE_TEMPLATE)
        for i, n in enumerate(["+8613800138000", beijing, "+862151234529"])
    ]
    assert [r.outcome for r in box.send("apispace-voice", batch)] == [Outcome.ACCEPTED] * 3
    placed = [c["number"] for c in box.ledger("ihuyi") + box.ledger("apispace-voice")]
    assert placed == ["01065529988", "13800138000", "01065529988", "02151234529"]


def test_an_apispace_batch_refused_for_one_bad_number_fails_only_that_number(box: Box) -> None:
    box.config(refusals={"9999": "001"})  # the provider's own reason to refuse a number
    numbers = [f"+86138001{i:05d}" for i in range(40)]
    numbers[29] = "+8613800199999"
    messages = [Message(id=i, to=n, template=VOICE_TEMPLATE) for i, n in enumerate(numbers)]
    results = {r.message_id: r for r in box.dispatch("apispace-voice", messages)}
    assert sorted(results) == list(range(40))
    assert [i for i, r in results.items() if r.outcome is not Outcome.ACCEPTED] == [29]
    assert (results[29].outcome, results[29].code) == (Outcome.PERMANENT, "001")
    placed = Counter(c["number"] for c in box.ledger("apispace-voice") if c["placed"])
    assert placed == Counter(n.removeprefix("+86") for i, n in enumerate(numbers) if i != 29)
    assert len(box.ledger("apispace-voice")) - len(placed) <= 2 * 6  # about 2·log2(40) refusals


def test_an_itniotech_group_refused_for_two_bad_callees_fails_only_those(box: Box) -> None:
    box.config(refusals={"4444": "-22"})
    numbers = [f"+9198765{i:05d}" for i in range(100)]
    numbers[3], numbers[70] = "+919876544444", "+447911124444"
    messages = [Message(id=i, to=n, template="f.mp3") for i, n in enumerate(numbers)]
    results = {r.message_id: r for r in box.dispatch("itniotech", messages)}
    assert sorted(results) == list(range(100))
    refused = {
        i: (r.outcome, r.code) for i, r in results.items() if r.outcome is not Outcome.ACCEPTED
    }
    assert refused == {3: (Outcome.PERMANENT, "-22"), 70: (Outcome.PERMANENT, "-22")}
    placed = Counter(c["number"] for c in box.ledger("itniotech") if c["placed"])
    assert sum(placed.values()) == 98 and set(placed.values()) == {1}


def test_ihuyi_template_calls_carry_the_password_the_sandbox_checks_on_its_own(box: Box) -> None:

    ihuyi: Ihuyi = box.providers["ihuyi"]  # type: ignore[assignment]
    added = ihuyi.parse_admin(
        box.transport.perform(ihuyi.add_template_call("您的订单号是:【变量】。", time.time())),  # type: ignore[arg-type]
        "templateid",
    )
    assert (added.ok, added.code) == (True, "2") and added.value
    gone = ihuyi.parse_admin(
        box.transport.perform(ihuyi.delete_template_call(added.value, time.time()))  # type: ignore[arg-type]
    )
    assert (gone.ok, gone.code) == (True, "2")
    # a password by the other formula (Submit's) is refused: the check is not a formality
    form = dict(ihuyi.add_template_call("另一个模板【变量】", time.time()).form or {})
    form["password"] = hashlib.md5(b"not the documented formula").hexdigest()  # noqa: S324
    refused = httpx.post(f"{box.url}/webservice/voice.php?method=AddTemplate", data=form).json()
    assert refused["code"] == 405


def test_the_network_rows_of_the_code_table_hold_through_the_real_transport(box: Box) -> None:
    """docs/codes.md: a request that never left is transient; one that got no answer
    after it was sent is ambiguous (and was placed: never placed again blind)."""

    table = {
        r.code: Outcome(r.result) for r in rows("Answers no document describes (every provider)")
    }
    message = ONE_OF_EACH["ihuyi"]
    nowhere = registry.build(
        "ihuyi",
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            ihuyi_account="a",
            ihuyi_apikey=SecretStr("k"),
            ihuyi_base_url=f"http://127.0.0.1:{free_port()}",
        ),
    )
    closed = Box(box.url, {"ihuyi": nowhere})
    (never_left,) = closed.dispatch("ihuyi", [message])
    closed.transport.close()
    assert (never_left.outcome, never_left.code) == (table["net:ConnectError"], "net:ConnectError")

    box.config(timeout_rate=1.0, timeout_hold=3.0)
    impatient = Box(box.url, box.providers)
    impatient.transport = Transport(HttpSettings(read_timeout=0.5))
    (no_answer,) = impatient.dispatch("ihuyi", [message])
    impatient.transport.close()
    assert (no_answer.outcome, no_answer.code) == (table["net:ReadTimeout"], "net:ReadTimeout")
    assert [c["placed"] for c in box.ledger("ihuyi")] == [True]


# -- the sandbox's clock (clock_offset): what tests move with the workers' clock ------------


def test_ihuyi_counts_its_caps_on_the_sandbox_clock_which_moves_only_forward(box: Box) -> None:
    message = Message(id=1, to="+8613800138000", content="您的快递已到。")
    codes = []
    # each call 2 s after the last on the sandbox's clock, however fast they really come
    for offset in (0.0, 2.0, 4.0, 6.0):
        box.config(clock_offset=offset)
        (result,) = box.send("ihuyi", [message])
        codes.append(result.code)
    # the fourth within a minute (of the sandbox's clock: the real one ran < 54 s)
    assert codes == ["2", "2", "2", "4081"]

    # a day on, on the sandbox's clock only: the minute has passed; the signature, stamped
    # with the host's own clock, is still fresh (stamps are checked against the host's)
    box.config(clock_offset=86400.0)
    (result,) = box.send("ihuyi", [message])
    assert (result.outcome, result.code) == (Outcome.ACCEPTED, "2")
    placed = [c["at"] for c in box.ledger("ihuyi") if c["placed"]]
    assert len(placed) == 4 and placed[-1] - placed[0] >= 86400.0

    # never backwards (a clock going back would re-open windows), never a non-number
    for bad in (86399.0, "86401", True, None):
        answer = httpx.post(f"{box.url}/_sandbox/config", json={"clock_offset": bad}, timeout=10)
        assert answer.status_code == 400, bad
    assert httpx.get(f"{box.url}/_sandbox/config", timeout=10).json()["clock_offset"] == 86400.0
