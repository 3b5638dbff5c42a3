"""One webhook delivery in this process, to a real receiver over real HTTP: signed as
Standard Webhooks sign, the same ``webhook-id`` on every attempt, the first retry due
within 10 s, both signatures while a secret rotates, no redirect followed, and the
address checked again when connecting (DNS rebinding)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from config.settings import Settings
from harness.receiver import Received, WebhookReceiver
from observe.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_OUTCOMES
from store import Change, Expect, NewNotification, Status
from store.deliveries import AttemptResult, Delivery, DeliveryStore
from store.webhooks import EndpointStore
from tasks.runtime import Runtime
from tasks.webhook_gauges import WebhookBacklogCollector
from tasks.webhook_http import MAX_ANSWER, TIMEOUT, attempt, webhook_client
from tasks.webhooks import deliver, hand_out_due, outcome_of
from tests.conftest import embedded_settings
from webhooks import check_url, verify_webhook
from worker.queues import WEBHOOK_QUEUE


@pytest.fixture
def rt(database_url: str, redis_url: str) -> Iterator[Runtime]:
    runtime = Runtime.build(embedded_settings(database_url, redis_url, webhook_allow_private=True))
    yield runtime
    runtime.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def sent_notification(rt: Runtime, owner: str = "admin") -> int:
    (made,) = rt.notifications.insert(
        [NewNotification("ihuyi", "+8613800138000", content="您的订单已发出", owner=owner)]
    )
    for status in (Status.SENDING, Status.SENT):
        row = rt.notifications.get(made.id)
        rt.notifications.transition([Change(made.id, status, Expect.row(row))])
    return made.id


def only_delivery(rt: Runtime, endpoint_id: int) -> dict:
    (delivery,) = DeliveryStore(rt.db).log(endpoint_id)
    return delivery


def test_an_event_arrives_signed_with_the_endpoints_secret_and_is_delivered(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    endpoint, secret = EndpointStore(rt.db).create("admin", receiver.url)
    notification_id = sent_notification(rt)
    delivery = only_delivery(rt, endpoint.id)
    assert deliver(rt, [delivery["id"]]) == ["delivered"]
    (got,) = receiver.snapshot()
    verify_webhook(secret, got.headers, got.body)
    event = json.loads(got.body)
    assert got.webhook_id == delivery["webhook_id"]
    assert (event["type"], event["data"]["id"], event["data"]["to"]) == (
        "notification.sent",
        notification_id,
        "138****8000",
    )
    logged = only_delivery(rt, endpoint.id)
    assert logged["status"] == "delivered" and logged["attempts"][0]["status_code"] == 204
    assert deliver(rt, [delivery["id"]]) == []  # a second copy of the task sends nothing
    assert len(receiver.snapshot()) == 1


def test_a_failed_attempt_is_due_again_within_10_s_under_the_same_webhook_id(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    seen: set[str] = set()

    def fail_first(got: Received) -> int:
        first = got.webhook_id not in seen
        seen.add(got.webhook_id)
        return 503 if first else 200

    receiver.answer = fail_first
    endpoint, secret = EndpointStore(rt.db).create("admin", receiver.url)
    sent_notification(rt)
    delivery = only_delivery(rt, endpoint.id)
    assert deliver(rt, [delivery["id"]]) == ["pending"]
    failed = only_delivery(rt, endpoint.id)
    retry_at = failed["next_attempt_at"]
    first_wait = rt.settings.webhook_retry_waits[0]
    assert retry_at == failed["attempts"][0]["at"] + first_wait and first_wait <= 10
    assert hand_out_due(rt, now=retry_at - 0.5) == 0
    assert hand_out_due(rt, now=retry_at) == 1
    message = json.loads(redis.Redis.from_url(rt.settings.redis_url).lpop(WEBHOOK_QUEUE))
    assert json.loads(base64.b64decode(message["body"]))[0] == [[delivery["id"]]]
    assert deliver(rt, [delivery["id"]]) == ["delivered"]
    first, second = receiver.snapshot()
    assert first.webhook_id == second.webhook_id == delivery["webhook_id"]
    for got in (first, second):
        verify_webhook(secret, got.headers, got.body)
    assert first.body == second.body
    codes = [a["status_code"] for a in only_delivery(rt, endpoint.id)["attempts"]]
    assert codes == [503, 200]


def test_one_endpoints_events_go_in_one_task_and_wait_together_while_it_is_down(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    endpoint, _ = EndpointStore(rt.db).create("admin", receiver.url)
    other, _ = EndpointStore(rt.db).create("admin", receiver.url + "/other")
    for _ in range(3):
        sent_notification(rt)
    broker = redis.Redis.from_url(rt.settings.redis_url)
    assert hand_out_due(rt) == 6
    tasks = [
        json.loads(base64.b64decode(json.loads(m)["body"]))[0][0]
        for m in broker.lrange(WEBHOOK_QUEUE, 0, -1)
    ]
    ours = [d["id"] for d in DeliveryStore(rt.db).log(endpoint.id)]
    assert sorted(map(sorted, tasks)) == sorted(
        [sorted(ours), sorted(d["id"] for d in DeliveryStore(rt.db).log(other.id))]
    )
    receiver.stop()  # its port closed: no answer at all
    try:
        assert deliver(rt, ours) == ["pending"] * 3
    finally:
        receiver.start()
    log = DeliveryStore(rt.db).log(endpoint.id)
    answers = sorted(d["attempts"][0]["answer"] for d in log)
    assert answers[0].startswith("ConnectError")  # the one tried; the rest not sent
    assert answers[1:] == [f"not sent: delivery {min(ours)} just before got no answer"] * 2
    assert len({d["next_attempt_at"] for d in log}) == 1  # all due again together
    assert deliver(rt, ours) == ["delivered"] * 3


def test_while_a_secret_rotates_both_sign_and_either_verifies(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    endpoints = EndpointStore(rt.db)
    endpoint, old = endpoints.create("admin", receiver.url)
    new = endpoints.rotate(endpoint.id, None, overlap=3600)
    assert new is not None
    sent_notification(rt)
    deliver(rt, [only_delivery(rt, endpoint.id)["id"]])
    (got,) = receiver.snapshot()
    assert len(got.headers["webhook-signature"].split()) == 2
    verify_webhook(old, got.headers, got.body)
    verify_webhook(new, got.headers, got.body)


def test_a_redirect_is_an_answer_not_followed(rt: Runtime, receiver: WebhookReceiver) -> None:
    elsewhere = WebhookReceiver().start()
    try:
        receiver.answer = lambda _: 307
        receiver.headers = {"location": elsewhere.url}
        endpoint, _ = EndpointStore(rt.db).create("admin", receiver.url)
        sent_notification(rt)
        assert deliver(rt, [only_delivery(rt, endpoint.id)["id"]]) == ["pending"]
        assert only_delivery(rt, endpoint.id)["attempts"][0]["status_code"] == 307
        assert elsewhere.snapshot() == []
    finally:
        elsewhere.stop()


def test_a_name_that_resolves_to_a_private_address_at_connect_time_is_refused(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    """DNS rebinding: public when registered, loopback (where the receiver listens) when
    the attempt connects. The same client allowed private addresses reaches it, so the
    refusal is the guard's, not a receiver that could not be reached."""
    url = f"http://hooks.example:{receiver.port}/hooks/notifyq"
    check_url(url, allow_private=False, resolve=lambda _h, _p: ["93.184.216.34"])
    endpoint, _ = EndpointStore(rt.db).create("admin", url)
    sent_notification(rt)
    delivery_id = only_delivery(rt, endpoint.id)["id"]

    def rebound(host: str, _port: int) -> list[str]:
        assert host == "hooks.example"
        return ["127.0.0.1"]

    with webhook_client(allow_private=False, resolve=rebound) as guarded:
        assert deliver(rt, [delivery_id], client=guarded) == ["pending"]
    (refused,) = only_delivery(rt, endpoint.id)["attempts"]
    assert refused["status_code"] is None
    assert refused["answer"] == "refused: hooks.example resolves to 127.0.0.1, which is loopback"
    assert receiver.snapshot() == []
    DeliveryStore(rt.db).replay(endpoint.id, delivery_id)
    with webhook_client(allow_private=True, resolve=rebound) as allowed:
        assert deliver(rt, [delivery_id], client=allowed) == ["delivered"]
    assert len(receiver.snapshot()) == 1


def gauges(rt: Runtime) -> dict[str, float]:
    return {
        family.name: family.samples[0].value for family in WebhookBacklogCollector(rt).collect()
    }


def test_the_gauges_show_what_waits_and_for_how_long_until_it_is_delivered(
    rt: Runtime, receiver: WebhookReceiver
) -> None:
    assert gauges(rt) == {
        "notifyq_webhook_events_pending": 0.0,
        "notifyq_webhook_oldest_pending_seconds": 0.0,
    }
    endpoint, _ = EndpointStore(rt.db).create("admin", receiver.url)
    sent_notification(rt)
    made = only_delivery(rt, endpoint.id)["created_at"]
    waiting = gauges(rt)
    assert waiting["notifyq_webhook_events_pending"] == 1.0
    assert 0 <= waiting["notifyq_webhook_oldest_pending_seconds"] <= time.time() - made
    before = WEBHOOK_ATTEMPTS.labels("success")._value.get()
    deliver(rt, [only_delivery(rt, endpoint.id)["id"]])
    assert WEBHOOK_ATTEMPTS.labels("success")._value.get() == before + 1
    assert gauges(rt)["notifyq_webhook_events_pending"] == 0.0


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (AttemptResult(204, "", 0.1), "success"),
        (AttemptResult(410, "gone", 0.1), "http_4xx"),
        (AttemptResult(502, "", 0.1), "http_5xx"),
        (AttemptResult(302, "", 0.1), "http_other"),
        (AttemptResult(None, "timeout: ReadTimeout", 10.0), "timeout"),
        (AttemptResult(None, "refused: h resolves to 10.0.0.1, which is private", 0.0), "refused"),
        (AttemptResult(None, "ConnectError: [Errno 111] Connection refused", 0.0), "network"),
    ],
)
def test_each_attempt_is_counted_by_what_came_of_it(result: AttemptResult, outcome: str) -> None:
    assert outcome_of(result) == outcome and outcome in WEBHOOK_OUTCOMES


def test_the_default_waits_retry_within_10_s_and_for_more_than_24_hours() -> None:
    waits = Settings(_env_file=None).webhook_retry_waits  # type: ignore[call-arg]
    assert waits[0] <= 10 and sum(waits) >= 24 * 3600
    assert list(waits) == sorted(waits)  # growing


class RawServer:
    """A TCP server that answers every connection with ``answer`` (bytes, then a body of
    ``body_bytes`` written in 64 KB pieces) and counts what it managed to write."""

    def __init__(self, answer: bytes | None, body_bytes: int = 0) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.written = 0
        self.done = threading.Event()
        self.answer, self.body_bytes = answer, body_bytes
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            if self.answer is None:  # never answer
                self.done.wait(30)
                return
            try:
                conn.sendall(self.answer)
                piece = b"x" * 65536
                while self.written < self.body_bytes:
                    conn.sendall(piece)
                    self.written += len(piece)
            except OSError:
                pass
        self.done.set()

    def close(self) -> None:
        self.done.set()
        self.listener.close()


def delivery_to(port: int) -> Delivery:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    return Delivery(1, 1, "msg_raw", b"{}", 0, f"http://127.0.0.1:{port}/h", (secret,))


def test_at_most_64_kb_of_an_answer_is_read() -> None:
    """A receiver answering 200 with a 64 MB body: the attempt stops reading at 64 KB and
    closes, so the receiver cannot write it all (what the sockets buffer aside)."""
    body = 64 * 1024 * 1024
    head = f"HTTP/1.1 200 OK\r\ncontent-length: {body}\r\n\r\n".encode()
    server = RawServer(head, body)
    try:
        with webhook_client(allow_private=True) as client:
            result = attempt(client, delivery_to(server.port))
        assert result.ok and len(result.answer) == MAX_ANSWER == 64 * 1024
        assert server.done.wait(10)
        assert server.written < body // 4
    finally:
        server.close()


def test_a_receiver_that_never_answers_is_a_timeout() -> None:
    """The same client as every attempt's, its 10 s shortened here to half a second."""
    server = RawServer(None)
    try:
        with webhook_client(allow_private=True, timeout=0.5) as client:
            result = attempt(client, delivery_to(server.port))
        assert result.status_code is None and result.answer.startswith("timeout")
        assert 0.5 <= result.seconds < 9 and outcome_of(result) == "timeout"
    finally:
        server.close()
    assert TIMEOUT == 10.0
