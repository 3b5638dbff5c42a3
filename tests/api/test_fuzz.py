"""Every HTTP route under arbitrary input (hypothesis), in process over a real store and a
real Redis: no input gets a 5xx; a refused request stores nothing and queues nothing; a
body that looks like a request is answered 2xx or 422 naming a field; a wrong or missing
bearer key is 401 on every ``/v1`` route, the same answer whichever key was almost
right; a wrong callback token is 404 on every callback route.

"Stores nothing" is measured, not assumed: every table of the ledger is counted before
and after each request, with the broker's dispatch list and the deferred set. The app
runs under ``TestClient`` (no sockets, no worker: nothing is sent), so a few hundred
examples a property cost seconds; the ``database_url`` fixture runs each property on
SQLite and, where ``NOTIFYQ_TEST_POSTGRES_URL`` is set, on PostgreSQL too — whose
stricter types (no NUL in text, bounded ``VARCHAR``) are where a 500 would hide.
"""

from __future__ import annotations

import json
import os
import string
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import redis
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from api.app import create_app
from config.settings import Settings
from providers.registry import NAMES
from scheduler.deferred import KEY as DEFERRED_KEY
from store.schema import Base
from tasks.publish import flush_dispatch
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS, embedded_settings
from worker.queues import DISPATCH_QUEUE

with warnings.catch_warnings():  # starlette's TestClient nags about httpx at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

KEYS = TEST_CREDENTIALS["NOTIFYQ_API_KEYS"].split(",")
TOKEN = TEST_CREDENTIALS["NOTIFYQ_CALLBACK_TOKEN"]
AUTH = {"Authorization": f"Bearer {KEYS[0]}"}

#: ``NOTIFYQ_FUZZ_EXAMPLES=5000`` for a long, random hunt; by default a short run that
#: draws the same examples every time, so CI is reproducible
EXAMPLES = int(os.environ.get("NOTIFYQ_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=not EXAMPLES,
)

#: (method, path) of every /v1 route; ``{id}`` is filled in by the tests
V1_ROUTES = [
    ("POST", "/v1/notifications"),
    ("POST", "/v1/notifications:batch"),
    ("GET", "/v1/notifications/{id}"),
    ("POST", "/v1/campaigns"),
    ("GET", "/v1/campaigns/{id}"),
    ("POST", "/v1/campaigns/{id}/pause"),
    ("POST", "/v1/campaigns/{id}/resume"),
    ("POST", "/v1/campaigns/{id}/cancel"),
]
CALLBACKS = ["ihuyi/receipt", "ihuyi/template", "jumdata", "apispace-sms", "itniotech"]

NOTIFICATION_FIELDS = {
    "provider",
    "to",
    "template",
    "content",
    "params",
    "options",
    "route",
    "idempotency_key",
    "not_before",
}
CAMPAIGN_FIELDS = {
    "provider",
    "name",
    "template",
    "content",
    "options",
    "rate",
    "at",
    "cron",
    "recipients",
    "csv",
}


# -- the app under test ---------------------------------------------------------------------


@dataclass(repr=False)
class Api:
    client: TestClient
    runtime: Runtime
    broker: redis.Redis

    def __repr__(self) -> str:  # a falsifying example prints it: keep it one line
        return f"Api({self.runtime.db.url.get_backend_name()})"

    def footprint(self) -> dict[str, int]:
        """Rows in every table of the ledger, dispatch messages and deferred entries
        (once this process's publisher has sent what it gathered: a post is answered at
        its commit, its id leaves within the linger)."""
        flush_dispatch()
        with self.runtime.db.read() as conn:
            counts = {
                table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in Base.metadata.sorted_tables
            }
        counts["broker:" + DISPATCH_QUEUE] = int(self.broker.llen(DISPATCH_QUEUE))
        counts["redis:deferred"] = int(self.broker.zcard(DEFERRED_KEY))
        return counts


def app_settings(database_url: str, redis_url: str) -> Settings:
    # the fuzz probes fields, not the per-key campaign rate (tests/api/test_doors.py)
    return embedded_settings(database_url, redis_url, campaigns_per_minute=1_000_000)


@pytest.fixture
def api(database_url: str, redis_url: str) -> Iterator[Api]:
    runtime = Runtime.build(app_settings(database_url, redis_url))
    client = TestClient(create_app(runtime.settings, runtime))
    try:
        yield Api(client, runtime, redis.Redis.from_url(redis_url))
    finally:
        client.close()
        runtime.close()


def changed(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


def assert_refused_cleanly(api: Api, before: dict[str, int], answer: Any, what: str) -> None:
    event(f"answered {answer.status_code}")
    assert answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:300]}"
    if answer.status_code >= 400:
        assert changed(before, api.footprint()) == {}, f"{what}: refused but stored or queued"


def field_root(field: str) -> str:
    return field.split(".", 1)[0].split("[", 1)[0]


def assert_names_fields(answer: Any, allowed: set[str]) -> None:
    body = answer.json()
    assert body["errors"], body
    for error in body["errors"]:
        assert isinstance(error["message"], str) and error["message"], error
        assert field_root(error["field"]) in allowed | {"body"}, error


# -- strategies -------------------------------------------------------------------------------

#: every code point, lone surrogates and NUL included (json.dumps escapes them as \uXXXX)
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
huge_ints = st.integers() | st.sampled_from([2**63, -(2**63) - 1, 10**30, -1, 0, 10**4300 - 1])
floats = st.floats(allow_nan=True, allow_infinity=True)
scalars = st.none() | st.booleans() | huge_ints | floats | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

NUMBERS = [
    "13800138000",
    "+86 138 0013 8000",
    "8613800138000",
    "010-62345678",
    "+919876543210",
    "+447911123456",
    "15800001234",
    "12345",
    "",
    "1380013800\x00",
]
numbers = (
    st.sampled_from(NUMBERS)
    | st.from_regex(r"\+?(86)?1[3-9][0-9]{9}", fullmatch=True)
    | any_text
    | huge_ints
)
TEXTS = [
    "您的订单号是：9633。已由顺风快递发出，请注意查收。",
    "【Eolink】您的验证码是{$var}，5分钟内有效。",
    "Your code is 4821",
    "x" * 2001,
    "a\x00b",
]
texts = st.sampled_from(TEXTS) | any_text | st.none()
OPTION_NAMES = [
    "allowedCallTime",
    "transData",
    "isNotifyFileId",
    "playTimes",
    "maxDuration",
    "maxRingingTime",
    "loopCount",
    "displayNum",
    "calledInfo",
    "extend",
    "uid",
]
options = st.dictionaries(st.sampled_from(OPTION_NAMES) | any_text, scalars, max_size=3)


def mutated(
    bases: list[dict[str, Any]], fields: dict[str, st.SearchStrategy[Any]], most: int = 2
) -> st.SearchStrategy[dict[str, Any]]:
    """A good body with up to ``most`` of its fields replaced (or added) by drawn values:
    close enough to a request that the interesting refusals (and acceptances) happen,
    where a body of random keys would be refused at the first field every time."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        body = dict(draw(st.sampled_from(bases)))
        for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=most, unique=True)):
            body[name] = draw(fields[name])
        return body

    return build()


SMS_TEXT = "【Eolink】您的验证码是{$var}，5分钟内有效。"
GOOD_NOTIFICATIONS: list[dict[str, Any]] = [
    {"provider": "ihuyi", "to": "13800138000", "content": TEXTS[0]},
    {"provider": "apispace-voice", "to": "010-62345678", "template": "123456", "params": ["张三"]},
    {"provider": "apispace-sms", "to": "15800001234", "content": SMS_TEXT, "params": ["4821"]},
    {"provider": "jumdata", "to": "+86 139 0013 0000", "template": "1001", "params": ["李四"]},
    {"provider": "itniotech", "to": "+919876512222", "template": "f.mp3"},
]
legs = mutated(
    GOOD_NOTIFICATIONS,
    {
        "provider": st.sampled_from(NAMES) | any_text,
        "template": texts | huge_ints,
        "content": texts,
        "params": st.lists(any_text | huge_ints | floats, max_size=3) | json_values,
        "options": options | json_values,
    },
)
#: bodies that look like a notification: the right names, values good, bad or odd
notification_bodies = mutated(
    GOOD_NOTIFICATIONS,
    {
        "provider": st.sampled_from(NAMES) | any_text,
        "to": numbers,
        "template": st.sampled_from(["123456", "f.mp3", "1"]) | texts | huge_ints,
        "content": texts,
        "params": st.lists(any_text | huge_ints, max_size=3) | json_values,
        "options": st.sampled_from([{"playTimes": 2}, {"allowedCallTime": "09:00-21:00"}])
        | options
        | json_values,
        "route": st.lists(legs.map(lambda leg: {k: v for k, v in leg.items() if k != "to"}))
        | json_values,
        "idempotency_key": st.sampled_from(["order-1", "order-2", "k" * 256, ""]) | any_text,
        "not_before": floats
        | huge_ints
        | any_text
        | st.sampled_from(["2030-01-01T10:00:00+08:00", "2020-01-01T00:00:00Z", "tomorrow"]),
    },
)
GOOD_CAMPAIGNS: list[dict[str, Any]] = [
    {
        "provider": "ihuyi",
        "content": "您好{name}，您的订单已发货。",
        "recipients": [{"mobile": "13800138000", "name": "王"}, {"mobile": "13800138001"}],
    },
    {"provider": "apispace-voice", "template": "123456", "csv": "mobile,name\n13800138000,张三\n"},
    {
        "provider": "itniotech",
        "template": "f.mp3",
        "csv": "mobile\n+919876512222\n",
        "rate": "5/second",
    },
]
campaign_bodies = mutated(
    GOOD_CAMPAIGNS,
    {
        "provider": st.sampled_from(NAMES) | any_text,
        "name": texts,
        "template": texts | huge_ints,
        "content": texts | st.just("您好{name}，您的订单{order}已发货。"),
        "options": options | json_values,
        "rate": st.sampled_from(["10/second", "1/minute;5/hour", "fast"]) | any_text,
        "at": floats | any_text | huge_ints,
        "cron": st.sampled_from(["0 10 * * 1", "* * *", "61 * * * *"]) | any_text,
        "recipients": st.lists(
            st.dictionaries(st.sampled_from(["mobile", "name", "order"]) | any_text, scalars),
            max_size=4,
        )
        | json_values,
        "csv": st.sampled_from(
            ["mobile,name\n13800138000,王\n", "mobile\n", "", "name\nx\n", "mobile\n\x00\n"]
        )
        | any_text,
    },
)
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/vnd.api+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "",
]
content_types = st.sampled_from(CONTENT_TYPES)


def nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"1" + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth  # unterminated


#: raw bodies: bytes of every kind, deep nesting, JSON of any shape
raw_bodies = (
    st.binary(max_size=200)
    | st.builds(nested, st.integers(1, 200_000), st.sampled_from(["list", "object", "open"]))
    | json_values.map(lambda v: json.dumps(v).encode())
    | notification_bodies.map(lambda v: json.dumps(v).encode())
    | st.just(b'{"provider": "ihuyi", "to": "13800138000", "content": "\xff\xfe"}')
    | st.just(b'{"provider": NaN, "to": Infinity}')
)
path_ids = huge_ints.map(str) | any_text.map(
    lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")
)
header_names = st.text(string.ascii_letters + "-", min_size=1, max_size=20).filter(
    lambda h: h.lower() not in {"authorization", "content-length", "host", "content-type"}
)
extra_headers = st.dictionaries(header_names, st.text(string.printable.strip(), max_size=40))
#: any body, sent as any content type
any_body = {"body": raw_bodies, "content_type": content_types}
#: a request to any /v1 route: its route, the id in its path, any body
any_v1_request = {"route": st.sampled_from(V1_ROUTES), "path_id": path_ids, **any_body}


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def send(
    api: Api,
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Any:
    all_headers = {**(headers or {})}
    if content_type:
        all_headers["content-type"] = content_type
    return api.client.request(method, path, content=body, headers=all_headers)


# -- /v1: anything at all ----------------------------------------------------------------------


@FUZZ
@given(**any_v1_request, headers=extra_headers)
@example(
    route=("POST", "/v1/notifications"),
    path_id="1",
    body=nested(100_000, "list"),
    content_type="application/json",
    headers={},
)
@example(
    route=("POST", "/v1/notifications:batch"),
    path_id="1",
    body=b'{"notifications": [' + nested(5_000, "object") + b"]}",
    content_type="application/json",
    headers={},
)
def test_no_v1_input_gets_a_5xx_and_a_refusal_stores_nothing(
    api: Api,
    route: tuple[str, str],
    path_id: str,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
) -> None:
    method, template = route
    path = template.replace("{id}", path_id)
    before = api.footprint()
    answer = send(api, method, path, body, content_type, {**headers, **AUTH})
    assert_refused_cleanly(api, before, answer, f"{method} {path}")
    # bad input is 422 naming a field; a path that names nothing is 404 (or 405)
    assert answer.status_code in (200, 201, 202, 404, 405, 409, 422), answer.text
    if answer.status_code == 422:
        assert answer.json()["errors"], answer.text


@FUZZ
@given(body=notification_bodies, extra=st.dictionaries(any_text, scalars, max_size=2))
@example(body={"provider": "ihuyi", "to": "13800138000", "content": "a\x00b"}, extra={})
@example(body={"provider": "ihuyi", "to": "13800138000", "content": "a\ud800b"}, extra={})
@example(
    body={"provider": "ihuyi", "to": "13800138000", "content": "您好", "idempotency_key": "k\x00"},
    extra={},
)
@example(
    body={"provider": "apispace-voice", "to": "13800138000", "template": "1", "params": ["\x00"]},
    extra={},
)
def test_a_notification_body_is_accepted_once_or_refused_naming_a_field(
    api: Api, body: dict[str, Any], extra: dict[str, Any]
) -> None:
    body = {**extra, **body}
    allowed = NOTIFICATION_FIELDS | {field_root(k) for k in extra}
    before = api.footprint()
    answer = send(api, "POST", "/v1/notifications", encode(body), headers=AUTH)
    event(f"answered {answer.status_code}")
    assert answer.status_code in (200, 202, 409, 422), answer.text
    after = api.footprint()
    if answer.status_code in (409, 422):  # 409: the key named another request
        assert_names_fields(answer, allowed)
        assert answer.status_code == 422 or body.get("idempotency_key")
        assert changed(before, after) == {}
        return
    accepted = answer.json()
    assert isinstance(accepted["id"], int) and accepted["status"] in ("queued", "deferred")
    if answer.status_code == 200:  # the key named an earlier notification: nothing new
        assert body.get("idempotency_key")
        assert changed(before, after) == {}
        return
    assert after["notifications"] == before["notifications"] + 1
    handed = (after["broker:notifyq"] - before["broker:notifyq"]) + (
        after["redis:deferred"] - before["redis:deferred"]
    )
    assert handed == 1, changed(before, after)


@FUZZ
@given(
    items=st.lists(notification_bodies, min_size=1, max_size=8)
    | st.lists(notification_bodies | json_values, min_size=1, max_size=8)
    | st.lists(st.just({}), min_size=1001, max_size=1001)
    | st.just([])
    | json_values,
)
def test_a_batch_answers_each_item_or_is_refused_whole_storing_nothing(
    api: Api, items: Any
) -> None:
    before = api.footprint()
    answer = send(
        api, "POST", "/v1/notifications:batch", encode({"notifications": items}), headers=AUTH
    )
    assert answer.status_code in (200, 422), answer.text
    after = api.footprint()
    event(f"answered {answer.status_code}")
    if answer.status_code == 422:
        assert_names_fields(answer, {"notifications"})
        assert changed(before, after) == {}
        return
    result = answer.json()
    event(f"{min(result['accepted'], 2)}+ accepted")
    assert len(result["items"]) == len(items)
    for index, item in enumerate(result["items"]):
        assert item["index"] == index
        assert (item["id"] is None) != (item["errors"] is None), item
        keys = {field_root(k) for k in items[index]} if isinstance(items[index], dict) else set()
        for error in item["errors"] or []:
            assert field_root(error["field"]) in NOTIFICATION_FIELDS | keys | {"body"}, error
    created = sum(1 for item in result["items"] if item["created"])
    assert after["notifications"] - before["notifications"] == created
    assert result["accepted"] + result["rejected"] == len(items)


@FUZZ
@given(body=campaign_bodies)
@example(body={"provider": "ihuyi", "content": "您好", "name": "a\x00", "csv": "mobile\n1\n"})
@example(body={"provider": "ihuyi", "content": "您好", "csv": "mobile\n" + "1" * 200_000 + "\n"})
@example(body={"provider": "ihuyi", "content": "您好", "csv": 'mobile\n"13800138000\n'})
def test_a_campaign_body_is_created_or_refused_naming_a_field(
    api: Api, body: dict[str, Any]
) -> None:
    before = api.footprint()
    answer = send(api, "POST", "/v1/campaigns", encode(body), headers=AUTH)
    event(f"answered {answer.status_code}")
    assert answer.status_code in (201, 422), answer.text
    after = api.footprint()
    if answer.status_code == 422:
        assert_names_fields(answer, CAMPAIGN_FIELDS)
        assert changed(before, after) == {}
    else:
        assert after["campaigns"] == before["campaigns"] + 1
        assert after["broker:notifyq"] == before["broker:notifyq"]  # released later, by beat


# -- /v1: the key ------------------------------------------------------------------------------


def near_misses(key: str, tails: st.SearchStrategy[str] = any_text) -> st.SearchStrategy[str]:
    """Keys that are almost ``key``: one character changed, cut short, longer, recased."""

    def flip(i: int) -> str:
        return key[:i] + ("x" if key[i] != "x" else "y") + key[i + 1 :]

    return st.one_of(
        st.integers(0, len(key) - 1).map(flip),
        st.integers(0, len(key) - 1).map(lambda n: key[:n]),
        tails.filter(bool).map(lambda t: key + t),
        st.just(key.upper()),
    )


def authorization(value: str | None) -> dict[str, str]:
    if value is None:
        return {}
    return {"Authorization": value.encode("utf-8", "surrogatepass").decode("latin-1")}


headers_that_fail = (
    st.none()
    | st.sampled_from(KEYS)
    .flatmap(lambda key: near_misses(key, st.text(string.printable.strip(), max_size=8)))
    .map(lambda k: f"Bearer {k}")
    | st.sampled_from(KEYS).map(lambda k: f"Basic {k}")
    | st.sampled_from(KEYS)  # no scheme
    | st.sampled_from(["Bearer", "Bearer ", "", "Token x"])
    | st.text(string.printable.strip(), max_size=60).filter(
        lambda v: v.partition(" ")[2].strip() not in KEYS
    )
)


@FUZZ
@given(**any_v1_request, header=headers_that_fail)
def test_a_wrong_or_missing_key_is_401_on_every_v1_route_whatever_the_body(
    api: Api,
    route: tuple[str, str],
    path_id: str,
    header: str | None,
    body: bytes,
    content_type: str,
) -> None:
    method, template = route
    path = template.replace("{id}", path_id)
    before = api.footprint()
    answer = send(api, method, path, body, content_type, authorization(header))
    assert answer.status_code == 401, f"{method} {path}: {answer.status_code} {answer.text[:200]}"
    assert changed(before, api.footprint()) == {}


def test_the_401_is_the_same_whichever_key_was_almost_right(api: Api) -> None:
    """Byte for byte the same answer for a miss in the first character, the last, a
    prefix, a longer key, the other key's near-miss: the answer says nothing about which
    key was close. (The comparison's constant time is ``api.auth``'s business.)"""
    key = KEYS[0]
    tries = [
        None,
        "Bearer x" + key[1:],
        f"Bearer {key[:-1]}x",
        f"Bearer {key[:-1]}",
        f"Bearer {key}0",
        f"Bearer {KEYS[1][:-1]}x",
        "Bearer nothing-like-it",
        f"Basic {key}",
    ]
    for method, template in V1_ROUTES:
        path = template.replace("{id}", "1")
        answers = [
            send(api, method, path, b"{}", headers=authorization(header)) for header in tries
        ]
        shapes = {
            (
                a.status_code,
                a.content,
                a.headers.get("www-authenticate"),
                a.headers.get("content-type"),
            )
            for a in answers
        }
        assert len(shapes) == 1, (path, shapes)
        assert next(iter(shapes))[0] == 401


# -- callbacks ---------------------------------------------------------------------------------

#: a good body of each callback, and what its fields may be replaced with
GOOD_CALLBACKS: dict[str, dict[str, Any]] = {
    "ihuyi/receipt": {
        "voiceid": "9001",
        "code": "2",
        "msg": "成功",
        "talktime": "3",
        "report_time": "2026-11-27 12:00:00",
        "mobile": "13800138000",
    },
    "ihuyi/template": {"templateid": "1234", "code": "2", "msg": "ok"},
    "jumdata": {"callId": "J-1", "callStatus": "0", "callTime": "12", "notifyData": "x"},
    "apispace-sms": {
        "msgId": "SMS42",
        "mobile": "15800001234",
        "status": "DELIVRD",
        "desc": "d",
        "reportTime": "2026-11-27 12:00:00",
    },
    "itniotech": {
        "voiceId": "77001",
        "callee": "919876543210",
        "status": "0",
        "reason": "r",
        "duration": 12,
        "endTime": "2026-11-27 12:00:00",
    },
}
CALLBACK_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "ihuyi/receipt": {
        "voiceid": st.sampled_from(["9002", "0", ""]) | any_text | st.just("9" * 65),
        "code": st.sampled_from(["2", "0", "-1", "-6", "7"]) | any_text,
        "msg": texts,
        "talktime": st.sampled_from(["3", "", "x", "9" * 5000]) | any_text,
        "report_time": any_text,
        "mobile": numbers,
    },
    "ihuyi/template": {
        "templateid": st.sampled_from(["1235", "x"]) | any_text | st.just("1" * 65),
        "code": st.sampled_from(["0", "2", "1"]) | any_text,
        "msg": texts,
    },
    "jumdata": {
        "callId": st.sampled_from(["J-2", ""]) | any_text | st.just("j" * 65),
        "callStatus": st.sampled_from(["0", "1", "2"]) | any_text | huge_ints,
        "callStatusText": texts,
        "callTime": st.sampled_from(["12", "", "١٢", "9" * 5000]) | any_text | huge_ints,
        "notifyData": any_text,
    },
    "apispace-sms": {
        "msgId": st.sampled_from(["SMS43", ""]) | any_text | st.just("m" * 129),
        "mobile": numbers,
        "status": st.sampled_from(["DELIVRD", "EXPIRED", ""]) | any_text | huge_ints,
        "desc": texts,
        "reportTime": any_text,
    },
    "itniotech": {
        "voiceId": st.sampled_from(["77002", ""]) | any_text | st.just("v" * 65),
        "callee": numbers,
        "status": st.sampled_from(["0", "1"]) | any_text | huge_ints,
        "reason": texts,
        "duration": st.sampled_from(["12", "0", "twelve", "١٢"]) | any_text | huge_ints,
        "endTime": any_text,
    },
}


def callback_forms(route: str) -> st.SearchStrategy[dict[str, Any]]:
    return mutated([GOOD_CALLBACKS[route]], CALLBACK_FIELDS[route])


def encode_callback(data: Any, kind: str) -> tuple[bytes, str]:
    """The body as JSON or as a form (a form flattens everything to text)."""
    if kind == "json":
        return encode(data), "application/json"
    pairs = data.items() if isinstance(data, dict) else []
    form = urlencode([(str(k), str(v)) for k, v in pairs], encoding="utf-8", errors="surrogatepass")
    return form.encode(), "application/x-www-form-urlencoded"


callback_bodies = st.sampled_from(CALLBACKS).flatmap(
    lambda route: st.tuples(
        st.just(route),
        callback_forms(route)
        | callback_forms(route).map(lambda form: [form, form])
        | json_values
        | st.lists(callback_forms(route), min_size=1, max_size=3),
        st.sampled_from(["json", "form"]),
    )
)


@FUZZ
@given(case=callback_bodies)
@example(case=("ihuyi/receipt", {"voiceid": "9001\x00", "code": "2"}, "form"))
@example(case=("ihuyi/receipt", {"voiceid": "9" * 65, "code": "2"}, "form"))
@example(case=("ihuyi/template", {"templateid": "1" * 65, "code": "2"}, "form"))
@example(case=("jumdata", {"callId": "j\ud800", "callStatus": "0"}, "json"))
@example(case=("itniotech", {"voiceId": "v\x00", "status": "0"}, "json"))
def test_a_callback_body_is_taken_or_refused_400_storing_nothing(
    api: Api, case: tuple[str, Any, str]
) -> None:
    route, data, kind = case
    body, content_type = encode_callback(data, kind)
    before = api.footprint()
    answer = send(api, "POST", f"/callbacks/{TOKEN}/{route}", body, content_type)
    event(f"answered {answer.status_code}")
    assert answer.status_code in (200, 400, 413), f"{route}: {answer.status_code} {answer.text}"
    if answer.status_code == 200:
        assert answer.text == "success"
    else:
        assert answer.text != "success"
        assert changed(before, api.footprint()) == {}


@FUZZ
@given(route=st.sampled_from(CALLBACKS), **any_body, headers=extra_headers)
@example(route="jumdata", body=nested(100_000, "list"), content_type="application/json", headers={})
@example(
    route="itniotech", body=nested(3_000, "object"), content_type="application/json", headers={}
)
def test_no_callback_input_gets_a_5xx_and_a_refusal_stores_nothing(
    api: Api, route: str, body: bytes, content_type: str, headers: dict[str, str]
) -> None:
    before = api.footprint()
    answer = send(api, "POST", f"/callbacks/{TOKEN}/{route}", body, content_type, headers)
    assert answer.status_code in (200, 400, 413), f"{route}: {answer.status_code} {answer.text}"
    assert_refused_cleanly(api, before, answer, route)


@FUZZ
@given(
    route=st.sampled_from(CALLBACKS),
    token=any_text.filter(lambda t: t != TOKEN) | near_misses(TOKEN),
    data=json_values,
)
def test_a_wrong_callback_token_is_404_on_every_callback_route(
    api: Api, route: str, token: str, data: Any
) -> None:
    before = api.footprint()
    path = f"/callbacks/{quote(token.encode('utf-8', 'surrogatepass'), safe='')}/{route}"
    answer = send(api, "POST", path, encode(data))
    assert answer.status_code == 404, f"{path}: {answer.status_code}"
    assert "success" not in answer.text
    assert changed(before, api.footprint()) == {}


# -- oversized bodies --------------------------------------------------------------------------


def test_oversized_bodies_are_refused_on_every_route_and_store_nothing(api: Api) -> None:
    """A body past its limit at each ``/v1`` route (the campaign one, the largest, for
    all) and at each callback: 413, before parsing; none stores anything."""
    huge = "9" * (api.runtime.settings.campaign_max_bytes + 1)  # past every /v1 limit
    bodies = {
        "/v1/notifications": {"provider": "ihuyi", "to": "13800138000", "content": huge},
        "/v1/notifications:batch": {"notifications": [{"provider": "ihuyi", "content": huge}]},
        "/v1/campaigns": {"provider": "ihuyi", "content": "您好", "csv": huge},
    }
    before = api.footprint()
    for path, body in bodies.items():
        answer = send(api, "POST", path, encode(body), headers=AUTH)
        assert answer.status_code == 413, path
        assert answer.json()["errors"][0]["field"] == "body"
    limit = api.runtime.settings.callback_max_bytes
    for route in CALLBACKS:
        answer = send(api, "POST", f"/callbacks/{TOKEN}/{route}", b"a=" + b"1" * limit, "")
        assert answer.status_code == 413, route
    assert changed(before, api.footprint()) == {}
