"""The APISpace, jumdata and itniotech clients against their emulators over real HTTP:
a ``notifyq sandbox`` process, the real transport, and the dispatcher's own grouping
(``call_providers``), so batches split past 1000 exactly as the workers split them."""

from __future__ import annotations

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

from providers import registry
from providers.apispace import ApispaceVoice
from providers.base import Message, Outcome, Provider, SendResult, UnreadableReply
from providers.http import Transport
from providers.jumdata import BLOCKED_CODE, Jumdata
from providers.sandbox.jumdata import JumdataEmulator
from providers.sandbox.state import Sandbox, SandboxConfig
from tests.conftest import TEST_CREDENTIALS
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
        from tasks.calls import call_providers

        runtime = SimpleNamespace(providers=self.providers, transport=self.transport)
        rows = [SimpleNamespace(provider=name, **vars_of(m)) for m in messages]
        return call_providers(runtime, rows)  # type: ignore[arg-type]

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
    from worker.settings import Settings

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**TEST_CREDENTIALS}
    env.pop("NOTIFYQ_CALLBACK_TOKEN")  # no receiver here: jumdata gets no notifyUrl
    stack = Stack(tmp_path, env)
    stack.sandbox(port, "--receipt-delay", "0.1", "--jumdata-window", "")
    values = {k.removeprefix("NOTIFYQ_").lower(): v for k, v in env.items()}
    for name in ("apispace", "apispace_report", "jumdata", "itniotech"):
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


@pytest.mark.parametrize("name", ["apispace-voice", "apispace-sms", "jumdata", "itniotech"])
def test_a_provider_answering_with_an_html_error_page_is_transient(box: Box, name: str) -> None:
    box.config(fail_rate=1.0)
    message = {
        "apispace-voice": Message(id=1, to="+8613800138000", template=VOICE_TEMPLATE),
        "apispace-sms": Message(
            id=1, to="+8613800138000", content="【Eolink】码{$var}", params=("1",)
        ),
        "jumdata": Message(id=1, to="+8613800138000", template="1001"),
        "itniotech": Message(id=1, to="+919876543210", template="f.mp3"),
    }[name]
    (result,) = box.send(name, [message])
    assert (result.outcome, result.code) == (Outcome.TRANSIENT, "http:500")


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


def test_itniotech_answers_per_callee_and_calls_only_the_valid_ones(box: Box) -> None:
    messages = [
        Message(id=1, to="+919876543210", template="f.mp3"),
        Message(id=2, to="+441234", template="f.mp3"),  # not a number: bypassed validation
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
        ("441234", False),
        ("447911123456", True),
    ]
    assert [c["ref"] for c in calls if c["placed"]] == [results[0].ref, results[2].ref]


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
