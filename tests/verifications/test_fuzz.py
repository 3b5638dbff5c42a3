"""The verification and suppression routes under arbitrary input (hypothesis), in process
over a real store and a real Redis: no input gets a 5xx; a refused request stores and
queues nothing; a body shaped like a request is answered 2xx, 429 or 422 naming a field."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis
from hypothesis import event, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from api.app import create_app
from scheduler.deferred import KEY as DEFERRED_KEY
from store.schema import Base
from tasks.runtime import Runtime
from tests.api.test_fuzz import FUZZ, any_text, huge_ints, json_values, scalars
from tests.verifications.test_api import AUTH, verifying
from worker.queues import DISPATCH_QUEUES

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROUTES = [
    ("POST", "/v1/verifications"),
    ("POST", "/v1/verifications/{id}/check"),
    ("GET", "/v1/verifications/{id}"),
    ("POST", "/v1/suppressions"),
    ("GET", "/v1/suppressions?{query}"),
    ("DELETE", "/v1/suppressions/{id}"),
]
numbers = st.sampled_from(["13800138000", "+86 138 0013 8000", "12345", "", "\x00"]) | any_text
verification_bodies = st.fixed_dictionaries(
    {"to": numbers},
    optional={
        "channel": st.sampled_from(["sms", "voice", "fax"]) | scalars,
        "template": st.sampled_from(["【Eolink】码{$var}", "码{code}", "TPL-1", "\x00"]) | scalars,
        "provider": st.sampled_from(["apispace-sms", "ihuyi", "jumdata", "itniotech"]) | scalars,
        "length": st.integers(0, 12) | scalars,
        "ttl": st.integers(0, 5000) | scalars,
        "purpose": st.sampled_from(["login", "a b", "x" * 65]) | scalars,
        "voice_after": st.integers(0, 5000) | scalars,
        "code": scalars,
    },
)
verification_bodies = verification_bodies | st.sampled_from(
    [
        {"to": "13800138000", "channel": "sms"},
        {"to": "+86 139 0013 9000", "channel": "voice", "length": 8},
        {"to": "13700137000", "channel": "sms", "voice_after": 30, "purpose": "login"},
    ]
)
suppression_bodies = st.fixed_dictionaries(
    {"to": numbers},
    optional={
        "provider": st.sampled_from(["ihuyi", "*", "acme", ""]) | scalars,
        "reason": st.sampled_from(["opt-out", "two words", "x" * 65]) | scalars,
    },
)
bodies = (
    st.binary(max_size=120)
    | json_values.map(lambda v: json.dumps(v).encode())
    | verification_bodies.map(lambda v: json.dumps(v).encode())
    | suppression_bodies.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries({"code": scalars}).map(lambda v: json.dumps(v).encode())
)
ids = huge_ints.map(str) | numbers.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe=""))
queries = st.dictionaries(
    st.sampled_from(["to", "provider", "after", "limit", "campaign_id", "x"]),
    any_text | huge_ints.map(str),
    max_size=3,
).map(
    lambda q: "&".join(
        f"{k}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in q.items()
    )
)


@pytest.fixture
def client(make_runtime: Callable[..., Runtime]) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = make_runtime(**verifying())
    test_client = TestClient(create_app(runtime.settings, runtime))
    yield test_client, runtime
    test_client.close()


def footprint(runtime: Runtime) -> dict[str, int]:
    with runtime.db.read() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }
    broker = redis.Redis.from_url(runtime.settings.redis_url)
    counts["dispatch"] = sum(int(broker.llen(queue)) for queue in DISPATCH_QUEUES.values())
    counts["deferred"] = int(broker.zcard(DEFERRED_KEY))
    return counts


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    path_id=ids,
    query=queries,
    body=bodies,
    content_type=st.sampled_from(["application/json", "text/plain", ""]),
)
def test_no_input_gets_a_5xx_and_a_refusal_stores_nothing(
    client: tuple[TestClient, Runtime],
    route: tuple[str, str],
    path_id: str,
    query: str,
    body: bytes,
    content_type: str,
) -> None:
    test_client, runtime = client
    method, template = route
    path = template.replace("{id}", path_id).replace("{query}", query)
    headers = {**AUTH, **({"content-type": content_type} if content_type else {})}
    before = footprint(runtime)
    answer = test_client.request(method, path, content=body, headers=headers)
    event(f"{method} {template}: {answer.status_code}")
    assert answer.status_code < 500, f"{method} {path}: {answer.status_code} {answer.text[:300]}"
    assert answer.status_code in (200, 201, 202, 204, 404, 405, 422, 429), answer.text
    if answer.status_code >= 400:
        assert footprint(runtime) == before, f"{method} {path}: refused but stored"
    if answer.status_code == 422:
        errors = answer.json()["errors"]
        assert errors and all(e["field"] for e in errors), answer.text


@FUZZ
@given(body=verification_bodies)
def test_a_verification_body_is_created_or_refused_naming_a_field(
    client: tuple[TestClient, Runtime], body: dict[str, Any]
) -> None:
    test_client, runtime = client
    before = footprint(runtime)
    answer = test_client.post(
        "/v1/verifications",
        content=json.dumps(body).encode(),  # NaN and Infinity as Python writes them
        headers={**AUTH, "content-type": "application/json"},
    )
    event(f"answered {answer.status_code}")
    assert answer.status_code in (202, 422, 429), answer.text
    if answer.status_code == 422:
        fields = {e["field"].split(".")[0] for e in answer.json()["errors"]}
        assert fields <= set(body) | {"to", "channel", "template", "body"}, answer.text
        assert footprint(runtime) == before
