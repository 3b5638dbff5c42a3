"""How an attempt reads a receiver's answer (tasks/webhook_wire.py), over real loopback
sockets: each framing HTTP/1.1 allows, what it skips, where it stops reading, what it
refuses — and which answers leave their connection fit for the next event."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasks.webhook_conn import WebhookClient
from tasks.webhook_http import MAX_ANSWER, attempt, webhook_client
from tasks.webhook_wire import MAX_HEAD
from tests.tasks.raw_receiver import RawReceiver, Script, delivery_to


@pytest.fixture
def client() -> Iterator[WebhookClient]:
    with webhook_client(allow_private=True) as made:
        yield made


def answering(answer: bytes, *, then_close: bool = False) -> Script:
    return lambda _: (answer, then_close)


def twice(client: WebhookClient, receiver: RawReceiver) -> tuple[list[tuple], int]:
    """Two attempts one after the other: their (status, answer), and how many
    connections they took."""
    results = [attempt(client, delivery_to(receiver.url())) for _ in range(2)]
    return [(r.status_code, r.answer) for r in results], receiver.connections


def test_a_chunked_answer_is_read_to_its_last_chunk_and_its_connection_kept(
    client: WebhookClient,
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nx-trailer: yes\r\n\r\n"
    )
    receiver = RawReceiver(answering(answer))
    try:
        assert twice(client, receiver) == ([(200, "hello world")] * 2, 1)
    finally:
        receiver.close()


def test_an_answer_without_length_is_read_until_the_receiver_closes(
    client: WebhookClient,
) -> None:
    receiver = RawReceiver(answering(b"HTTP/1.1 200 OK\r\n\r\nreceived, thanks", then_close=True))
    try:
        assert twice(client, receiver) == ([(200, "received, thanks")] * 2, 2)
    finally:
        receiver.close()


def test_informational_answers_before_the_answer_are_skipped(client: WebhookClient) -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n"
        b"HTTP/1.1 202 Accepted\r\ncontent-length: 6\r\n\r\nqueued"
    )
    receiver = RawReceiver(answering(answer))
    try:
        assert twice(client, receiver) == ([(202, "queued")] * 2, 1)
    finally:
        receiver.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_answer_over_64_kb_is_kept_to_64_kb_and_its_connection_closed(
    client: WebhookClient, framing: str
) -> None:
    body = b"x" * (MAX_ANSWER + 1000)
    if framing == "chunked":
        head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        answer = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    receiver = RawReceiver(answering(answer))
    try:
        assert twice(client, receiver) == ([(200, "x" * MAX_ANSWER)] * 2, 2)
        assert client.idle() == 0
    finally:
        receiver.close()


def test_an_answer_of_exactly_64_kb_is_read_whole_and_its_connection_kept(
    client: WebhookClient,
) -> None:
    body = b"y" * MAX_ANSWER
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    receiver = RawReceiver(answering(answer))
    try:
        assert twice(client, receiver) == ([(200, body.decode())] * 2, 1)
    finally:
        receiver.close()


def test_a_head_over_64_kb_is_an_error_not_an_answer(client: WebhookClient) -> None:
    padding = b"x-padding: " + b"p" * MAX_HEAD + b"\r\n"
    receiver = RawReceiver(
        answering(b"HTTP/1.1 200 OK\r\n" + padding + b"content-length: 0\r\n\r\n")
    )
    try:
        result = attempt(client, delivery_to(receiver.url()))
        assert result.status_code is None
        assert result.answer == "RemoteProtocolError: an answer's head over 64 KB"
        assert client.idle() == 0
    finally:
        receiver.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
    ],
    ids=["http-1.0", "connection-close"],
)
def test_an_http_1_0_or_connection_close_answer_is_read_and_its_connection_closed(
    client: WebhookClient, answer: bytes
) -> None:
    """The receiver leaves the connection open: the client is the one that closes it."""
    receiver = RawReceiver(answering(answer))
    try:
        assert twice(client, receiver) == ([(200, "ok")] * 2, 2)
        assert client.idle() == 0
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"HTTP/2 200\r\n\r\n", "not an HTTP/1.1 status line: b'HTTP/2 200'"),
        (b"HTTP/1.1 OK\r\n\r\n", "not an HTTP/1.1 status line: b'HTTP/1.1 OK'"),
        (b"HTTP/1.1 200 OK\r\n folded\r\n\r\n", "not a header line: b' folded'"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length : 0\r\n\r\n",
            "not a header line: b'content-length : 0'",
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "Content-Length b' -1'"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nok",
            "two different Content-Length headers",
        ),
        (b"HTTP/1.1 200 OK\nx: y\r\n\r\n", "a bare CR or LF in an answer's head"),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "not a chunk size: b'zz'",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "101 Switching Protocols, which nothing asked for",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            "the connection ended 5 bytes short of the body",
        ),
    ],
)
def test_an_answer_not_read_as_http_1_1_is_a_protocol_error(
    client: WebhookClient, answer: bytes, why: str
) -> None:
    receiver = RawReceiver(answering(answer, then_close=True))
    try:
        result = attempt(client, delivery_to(receiver.url()))
        assert (result.status_code, result.answer) == (None, f"RemoteProtocolError: {why}")
    finally:
        receiver.close()


def test_a_body_that_stops_coming_is_a_timeout_within_the_deadline() -> None:
    """Every read is bounded by the attempt's deadline (shortened here to half a
    second), not by a wait of its own each."""
    receiver = RawReceiver(answering(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome of it"))
    try:
        with webhook_client(allow_private=True, timeout=0.5) as client:
            result = attempt(client, delivery_to(receiver.url()))
        assert (result.status_code, result.answer) == (None, "timeout: ReadTimeout")
        assert 0.5 <= result.seconds < 9
    finally:
        receiver.close()


def test_the_request_is_one_post_with_its_length_host_and_signed_headers(
    client: WebhookClient,
) -> None:
    receiver = RawReceiver()
    try:
        assert attempt(client, delivery_to(receiver.url(), "msg_head")).status_code == 204
        (request,) = receiver.requests
        head, body = request.split(b"\r\n\r\n")
        line, *fields = head.decode().split("\r\n")
        named = dict(field.split(": ", 1) for field in fields)
        assert line == "POST /hooks?to=orders HTTP/1.1"
        assert named["host"] == f"127.0.0.1:{receiver.port}"
        assert named["content-length"] == str(len(body)) and body.startswith(b'{"type"')
        assert named["webhook-id"] == "msg_head"
        assert named["webhook-signature"].startswith("v1,")
    finally:
        receiver.close()


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/hooks", "http:///hooks", "http://exa mple.com/hooks", "http://h:99999/"],
)
def test_a_url_no_request_can_be_written_for_is_refused_unsent(
    client: WebhookClient, url: str
) -> None:
    result = attempt(client, delivery_to(url))
    assert result.status_code is None and result.answer.startswith("refused: ")


def test_a_target_with_spaces_or_other_scripts_is_percent_encoded(client: WebhookClient) -> None:
    receiver = RawReceiver()
    try:
        url = f"http://127.0.0.1:{receiver.port}/hooks/訂單 new?to=a b&x=%41"
        assert attempt(client, delivery_to(url)).status_code == 204
        (request,) = receiver.requests
        line = request.split(b"\r\n", 1)[0].decode()
        assert line == "POST /hooks/%E8%A8%82%E5%96%AE%20new?to=a%20b&x=%41 HTTP/1.1"
    finally:
        receiver.close()
