"""Where an attempt's connections come from (tasks/webhook_conn.py), over real sockets:
kept alive between events, sent once more on a new one when the receiver had closed the
kept one, bounded in number and age, shared by threads, and TLS checked against the
URL's host while the TCP connect goes to the address the guard checked."""

from __future__ import annotations

import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import webhook_conn
from tasks.webhook_conn import WebhookClient
from tasks.webhook_http import MAX_ANSWER, TIMEOUT, attempt, webhook_client
from tests.tasks.raw_receiver import RawReceiver, delivery_to, no_content

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


@pytest.fixture
def receiver() -> Iterator[RawReceiver]:
    made = RawReceiver()
    yield made
    made.close()


def webhook_ids(receiver: RawReceiver) -> list[str]:
    return [
        line.split(b": ", 1)[1].decode()
        for request in receiver.requests
        for line in request.split(b"\r\n")
        if line.startswith(b"webhook-id: ")
    ]


def test_an_endpoints_events_go_one_after_another_on_one_connection(
    receiver: RawReceiver,
) -> None:
    with webhook_client(allow_private=True) as client:
        results = [attempt(client, delivery_to(receiver.url(), f"msg_{i}")) for i in range(5)]
        assert [r.status_code for r in results] == [204] * 5
        assert client.idle() == 1
    assert receiver.connections == 1
    assert webhook_ids(receiver) == [f"msg_{i}" for i in range(5)]


def test_a_kept_connection_the_receiver_closed_meanwhile_is_replaced_and_the_post_sent() -> None:
    """The receiver answers, then hangs up without saying so: the connection waits in the
    pool, and the next event's write or read finds it closed."""
    receiver = RawReceiver(lambda _: (NO_CONTENT, True))
    try:
        with webhook_client(allow_private=True) as client:
            assert attempt(client, delivery_to(receiver.url(), "msg_1")).status_code == 204
            assert receiver.hung_up.acquire(timeout=10)
            assert client.idle() == 1
            assert attempt(client, delivery_to(receiver.url(), "msg_2")).status_code == 204
        assert receiver.connections == 2
        assert webhook_ids(receiver) == ["msg_1", "msg_2"]
    finally:
        receiver.close()


def test_a_kept_connection_closed_before_the_answer_sends_the_same_event_again() -> None:
    """The receiver reads the second request and hangs up without a byte of answer: sent
    again on a new connection, under the same webhook-id (at least once, by design)."""
    receiver = RawReceiver(lambda index: (b"", True) if index == 1 else (NO_CONTENT, False))
    try:
        with webhook_client(allow_private=True) as client:
            assert attempt(client, delivery_to(receiver.url(), "msg_1")).status_code == 204
            assert attempt(client, delivery_to(receiver.url(), "msg_2")).status_code == 204
        assert receiver.connections == 2
        assert webhook_ids(receiver) == ["msg_1", "msg_2", "msg_2"]
    finally:
        receiver.close()


def test_a_new_connection_closed_before_the_answer_is_not_sent_again() -> None:
    receiver = RawReceiver(lambda _: (b"", True))
    try:
        with webhook_client(allow_private=True) as client:
            result = attempt(client, delivery_to(receiver.url()))
        assert (result.status_code, result.answer) == (
            None,
            "NoAnswer: the connection ended before an answer",
        )
        assert receiver.connections == 1 and len(receiver.requests) == 1
    finally:
        receiver.close()


def test_a_connection_idle_past_its_expiry_is_closed_not_reused(
    receiver: RawReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhook_conn, "IDLE_EXPIRY", 0.0)  # every kept one has expired
    with webhook_client(allow_private=True) as client:
        for _ in range(3):
            assert attempt(client, delivery_to(receiver.url())).status_code == 204
    assert receiver.connections == 3
    for _ in range(3):
        assert receiver.hung_up.acquire(timeout=10)  # each closed by the client


def test_threads_share_the_pool_and_at_most_max_idle_connections_are_kept() -> None:
    """Four threads' requests held at the receiver until all four are in: four
    connections at once; once answered, two are kept and two closed."""
    arrived = threading.Barrier(4)

    def together(index: int) -> tuple[bytes, bool]:
        if index < 4:
            arrived.wait(timeout=30)
        return no_content(index)

    receiver = RawReceiver(together)
    client = WebhookClient(allow_private=True, timeout=TIMEOUT, keep=MAX_ANSWER, max_idle=2)
    codes: list[int | None] = []

    def post(i: int) -> None:
        codes.append(attempt(client, delivery_to(receiver.url(), f"msg_{i}")).status_code)

    try:
        threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert codes == [204] * 4 and receiver.connections == 4
        assert client.idle() == 2
        for _ in range(2):
            assert receiver.hung_up.acquire(timeout=10)
        assert attempt(client, delivery_to(receiver.url())).status_code == 204
        assert receiver.connections == 4  # a kept one carried it
    finally:
        client.close()
        receiver.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``hooks.example`` (and that name only)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=hooks.example", "-addext", "subjectAltName=DNS:hooks.example",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_receiver(certificate: tuple[Path, Path]) -> Iterator[RawReceiver]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*certificate)
    made = RawReceiver(tls=server)
    yield made
    made.close()


def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """What ``ssl.create_default_context()`` makes, trusting the test's certificate."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def to_loopback(_host: str, _port: int) -> list[str]:
    return ["127.0.0.1"]


def test_tls_names_the_urls_host_and_verifies_its_certificate_on_the_checked_address(
    tls_receiver: RawReceiver, certificate: tuple[Path, Path]
) -> None:
    with webhook_client(
        allow_private=True, resolve=to_loopback, ssl_context=trusting(certificate)
    ) as client:
        url = tls_receiver.url("hooks.example", "https")
        results = [attempt(client, delivery_to(url)) for _ in range(2)]
    assert [r.status_code for r in results] == [204, 204]
    assert tls_receiver.server_names == ["hooks.example"] and tls_receiver.connections == 1


def test_tls_refuses_a_certificate_for_another_host(
    tls_receiver: RawReceiver, certificate: tuple[Path, Path]
) -> None:
    with webhook_client(
        allow_private=True, resolve=to_loopback, ssl_context=trusting(certificate)
    ) as client:
        result = attempt(client, delivery_to(tls_receiver.url("other.example", "https")))
    assert result.status_code is None
    assert result.answer.startswith("ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert "Hostname mismatch" in result.answer and tls_receiver.requests == []


def test_tls_refuses_a_certificate_no_authority_signed(tls_receiver: RawReceiver) -> None:
    with webhook_client(allow_private=True, resolve=to_loopback) as client:
        result = attempt(client, delivery_to(tls_receiver.url("hooks.example", "https")))
    assert result.answer.startswith("ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED]")
    assert tls_receiver.requests == []


def test_past_max_active_a_request_waits_its_turn_within_its_deadline() -> None:
    """One request at a time (``max_active=1``): while the first is held at the
    receiver, a second waits for its turn and times out at its deadline (half a second
    here); once the first is answered, the next goes."""
    arrived, answered = threading.Event(), threading.Event()

    def held_first(index: int) -> tuple[bytes, bool]:
        if index == 0:
            arrived.set()
            answered.wait(30)
        return no_content(index)

    receiver = RawReceiver(held_first)
    client = WebhookClient(allow_private=True, timeout=30, keep=MAX_ANSWER, max_active=1)
    first: list[int | None] = []
    holder = threading.Thread(
        target=lambda: first.append(attempt(client, delivery_to(receiver.url())).status_code)
    )
    try:
        holder.start()
        assert arrived.wait(10)
        client.timeout = 0.5  # the second request's deadline, the first's 30 s
        waited = attempt(client, delivery_to(receiver.url()))
        assert (waited.status_code, waited.answer) == (None, "timeout: PoolTimeout")
        answered.set()
        holder.join(10)
        assert first == [204] and len(receiver.requests) == 1
        assert attempt(client, delivery_to(receiver.url())).status_code == 204
        assert receiver.connections == 1
    finally:
        answered.set()
        client.close()
        receiver.close()
