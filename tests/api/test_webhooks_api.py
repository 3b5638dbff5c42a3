"""``/v1/webhooks`` (README, "Webhooks"): the secret is shown once, bad input is a 422
naming its field with nothing stored, a URL that is not public is refused unless the
operator allows private addresses, and the delivery log filters and replays. Who sees
whose endpoints is in tests/api/test_keys.py's table."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from api.app import create_app
from store import Change, Expect, Status
from store.webhooks import EndpointStore
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS, embedded_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}
PUBLIC = "https://93.184.216.34/hooks"


def client_for(database_url: str, redis_url: str, **settings: object) -> Iterator[TestClient]:
    runtime = Runtime.build(embedded_settings(database_url, redis_url, **settings))
    with TestClient(create_app(runtime.settings, runtime)) as client:
        yield client
    runtime.close()


@pytest.fixture
def client(database_url: str, redis_url: str) -> Iterator[TestClient]:
    yield from client_for(database_url, redis_url)


def test_the_secret_is_in_the_answer_that_makes_it_and_never_again(client: TestClient) -> None:
    made = client.post("/v1/webhooks", json={"url": PUBLIC, "description": "orders"}, headers=AUTH)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["secret"].startswith("whsec_") and body["events"][0] == "notification.sent"
    shown = client.get(f"/v1/webhooks/{body['id']}", headers=AUTH).json()
    listed = client.get("/v1/webhooks", headers=AUTH).json()["webhooks"]
    assert "secret" not in shown and listed == [shown]
    assert body["secret"] not in client.get("/v1/webhooks", headers=AUTH).text
    rotated = client.post(f"/v1/webhooks/{body['id']}/rotate", headers=AUTH).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != body["secret"]


BAD = [
    ({"url": "http://127.0.0.1:8000/hook"}, "url"),
    ({"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
    ({"url": "http://10.0.0.7/hook"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": PUBLIC, "events": ["notification.lost"]}, "events"),
    ({"url": PUBLIC, "events": []}, "events"),
    ({"url": PUBLIC, "colour": "red"}, "colour"),
    ({"url": PUBLIC + "/\x00"}, "url"),
    ({}, "url"),
]


def test_bad_input_is_422_naming_the_field_and_nothing_is_stored(client: TestClient) -> None:
    for body, field in BAD:
        answer = client.post("/v1/webhooks", json=body, headers=AUTH)
        assert answer.status_code == 422, (body, answer.text)
        assert [e["field"] for e in answer.json()["errors"]] == [field], body
    assert client.get("/v1/webhooks", headers=AUTH).json() == {"webhooks": []}


def test_a_private_receiver_is_accepted_when_the_operator_allows_it(
    database_url: str, redis_url: str
) -> None:
    for client in client_for(database_url, redis_url, webhook_allow_private=True):
        made = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:8000/h"}, headers=AUTH)
        assert made.status_code == 201, made.text


def test_the_delivery_log_filters_by_status_and_a_replay_makes_a_delivery_pending(
    client: TestClient,
) -> None:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    made = client.post(
        "/v1/webhooks", json={"url": PUBLIC, "events": ["notification.sent"]}, headers=AUTH
    ).json()
    sent = client.post(
        "/v1/notifications",
        json={"provider": "ihuyi", "to": "13800138000", "content": "您的订单已发出"},
        headers=AUTH,
    ).json()["id"]
    for status in (Status.SENDING, Status.SENT):
        row = runtime.notifications.get(sent)
        runtime.notifications.transition([Change(sent, status, Expect.row(row))])
    path = f"/v1/webhooks/{made['id']}/deliveries"
    (pending,) = client.get(path, headers=AUTH).json()["deliveries"]
    assert (pending["type"], pending["subject_id"], pending["status"]) == (
        "notification.sent",
        sent,
        "pending",
    )
    assert pending["webhook_id"].startswith("msg_")
    assert client.get(path + "?status=failed", headers=AUTH).json() == {"deliveries": []}
    assert client.get(path + "?status=lost", headers=AUTH).status_code == 422
    retried = client.post(f"{path}/{pending['id']}/retry", headers=AUTH)
    assert retried.json() == {"id": pending["id"], "status": "pending"}
    assert client.post(f"{path}/{pending['id'] + 1}/retry", headers=AUTH).status_code == 404
    assert client.delete(f"/v1/webhooks/{made['id']}", headers=AUTH).status_code == 204
    assert EndpointStore(runtime.db).listed(None) == []
    assert client.get(path, headers=AUTH).status_code == 404
