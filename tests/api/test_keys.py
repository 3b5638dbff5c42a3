"""Each service sees only its own (README, "Keys"), in process over a real store and a real
Redis: one table runs every ``/v1`` route — and the operator page — as
the key that made the resource, another service's key, an admin key made with ``notifyq
keys create``, a NOTIFYQ_API_KEYS key, a read-only key, a revoked key and a key over its
rate.

Every cell gets a resource of its own, made by the owner through the API just before,
so no cell depends on another's changes. Another key's resource answers exactly what an
id that does not exist answers, and is left as it was (a pause, a cancel or a check by
another key changes nothing). The read-only key reads what it made itself and creates
nothing; the revoked key is refused like a wrong one."""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from api.keyring import announce
from store import Change, Expect, Status
from store.deliveries import DeliveryStore
from store.keys import KeyStore, Scope
from store.schema import Event, Notification, Verification
from store.webhooks import EndpointStore
from tasks.campaigns import campaigns
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS, embedded_settings
from tests.services import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

OWNER, OTHER, ADMIN, ENV, READER, REVOKED = "billing", "shop", "ops", "env", "audit", "gone"
#: a key over its rate (one request an hour, spent)
OVER = "flood"
CALLERS = (OWNER, OTHER, ADMIN, ENV, READER, REVOKED, OVER)
TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"
FAR = "2099-01-01T10:00:00+08:00"
MISSING = 987_654_321
#: a public address (an IP literal: nothing to resolve), never connected to here
PUBLIC_HOOK = "https://93.184.216.34/hooks/notifyq"
_numbers = itertools.count(1)


def number() -> str:
    return f"1390{next(_numbers):07d}"


@dataclass
class World:
    """The app, its runtime, and each caller's Authorization header."""

    client: TestClient
    runtime: Runtime
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    #: a notification the read-only key's name made (while it could send)
    reader_own: int = 0
    #: what the owner's idempotency key named first, and a campaign a list must show
    first_of_key: int = 0
    listed_campaign: int = 0

    def call(self, caller: str, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.client.request(method, path, json=body, headers=self.headers[caller])

    def made(self, method: str, path: str, body: Any, by: str = OWNER) -> dict[str, Any]:
        answer = self.call(by, method, path, body)
        assert answer.status_code in (200, 201, 202), answer.text
        return answer.json()

    def notification(self, by: str = OWNER) -> int:
        return self.made("POST", "/v1/notifications", one(), by)["id"]

    def campaign(self, *, paused: bool = False) -> int:
        made = self.made("POST", "/v1/campaigns", campaign_body())["id"]
        if paused:
            self.made("POST", f"/v1/campaigns/{made}/pause", None)
        return made

    def verification(self) -> int:
        return self.made("POST", "/v1/verifications", {"to": number(), "channel": "sms"})["id"]

    def webhook(self) -> int:
        return self.made("POST", "/v1/webhooks", {"url": PUBLIC_HOOK})["id"]

    def delivery(self) -> tuple[int, int]:
        """An endpoint of the owner's, and the event of one of its notifications sent."""
        webhook_id = self.webhook()
        notification_id = self.notification()
        for status in (Status.SENDING, Status.SENT):
            row = self.runtime.notifications.get(notification_id)
            self.runtime.notifications.transition([Change(row.id, status, Expect.row(row))])
        (made,) = DeliveryStore(self.runtime.db).log(webhook_id)
        return webhook_id, made["id"]


def one(**extra: Any) -> dict[str, Any]:
    return {"provider": "ihuyi", "to": number(), "content": TEXT, **extra}


def campaign_body() -> dict[str, Any]:
    return {
        "provider": "ihuyi",
        "content": TEXT,
        "at": FAR,
        "recipients": [{"mobile": number()}, {"mobile": number()}],
    }


@pytest.fixture
def world(database_url: str, redis_url: str) -> Iterator[World]:
    settings = embedded_settings(
        database_url,
        redis_url,
        verify_secret="verify-secret-keys-77a1",
        campaigns_per_minute=1000,
    )
    runtime = Runtime.build(settings)
    keys = KeyStore(runtime.db)
    made = {
        OWNER: keys.create(OWNER, {Scope.SEND})[1],
        OTHER: keys.create(OTHER, {Scope.SEND, Scope.READ})[1],
        ADMIN: keys.create(ADMIN, {Scope.ADMIN})[1],
        READER: keys.create(READER, {Scope.SEND})[1],
        REVOKED: keys.create(REVOKED, {Scope.SEND})[1],
        OVER: keys.create(OVER, {Scope.SEND}, rate="1/hour")[1],
        ENV: TEST_CREDENTIALS["NOTIFYQ_API_KEYS"].split(",")[0],
    }
    with TestClient(create_app(settings, runtime)) as client:
        w = World(client, runtime, {c: {"Authorization": f"Bearer {k}"} for c, k in made.items()})
        # the reader made a notification while it could send; its key is then made again,
        # read-only, under the same name (a rotation): it still sees what its name made
        w.reader_own = w.notification(by=READER)
        keys.revoke(READER)
        keys.revoke(REVOKED)
        w.headers[READER] = {"Authorization": f"Bearer {keys.create(READER, {Scope.READ})[1]}"}
        announce(runtime.redis)
        wait_until(lambda: refused(w, REVOKED) and not refused(w, READER), 5, what="the ring")
        assert w.call(OVER, "GET", f"/v1/campaigns/{MISSING}").status_code == 404  # its one
        yield w
    runtime.close()


def refused(w: World, caller: str) -> bool:
    return w.call(caller, "GET", f"/v1/notifications/{MISSING}").status_code == 401


# -- the table ----------------------------------------------------------------------------------

#: what each caller is answered, by route
OWNED = {OWNER: 200, OTHER: 404, ADMIN: 200, ENV: 200, READER: 404, REVOKED: 401, OVER: 429}
CONTROL = {**OWNED, READER: 403}
CHECK = CONTROL
ANYONE_SENDS = {OWNER: 202, OTHER: 202, ADMIN: 202, ENV: 202, READER: 403, REVOKED: 401, OVER: 429}
ADMIN_ONLY = {OWNER: 403, OTHER: 403, ADMIN: 200, ENV: 200, READER: 403, REVOKED: 401, OVER: 429}


Then = Callable[[World, str, httpx.Response, str], None]


@dataclass(frozen=True)
class Case:
    #: the method, the path and what else names the case
    route: str
    #: the path (and body) for one cell, with a fresh resource made by the owner
    prepare: Callable[[World], tuple[str, Any]]
    expect: Mapping[str, int]
    #: the same request naming a resource that does not exist (for the 404 cells)
    missing: Callable[[World], tuple[str, Any]] | None = None
    #: checks after the cell: (world, caller, response, path)
    then: Then | None = None

    @property
    def method(self) -> str:
        return self.route.split(" ")[0]


def on_one(
    route: str,
    made: Callable[[World], object],
    expect: Mapping[str, int],
    body: Any = None,
    then: Then | None = None,
) -> Case:
    """A route naming one resource: ``{id}`` in its path is what ``made`` makes for the
    owner for each cell, and :data:`MISSING` for the same request naming none."""
    path = route.split(" ")[1]
    return Case(
        route,
        lambda w: (path.format(id=made(w)), body),
        expect,
        missing=lambda w: (path.format(id=MISSING), body),
        then=then,
    )


def campaign_status(w: World, path: str) -> str:
    return str(campaigns(w.runtime).get(int(path.split("/")[3])).status)


def unchanged_unless_allowed(before: str) -> Then:
    """A control cell: the campaign moved only if the answer was 200."""

    def check(w: World, caller: str, answer: httpx.Response, path: str) -> None:
        if answer.status_code != 200:
            assert campaign_status(w, path) == before, (caller, answer.text)

    return check


def cancelled_by(w: World, caller: str, answer: httpx.Response, path: str) -> None:
    """Each row's cancel event names the key that cancelled, by its name."""
    if answer.status_code != 200:
        assert campaign_status(w, path) == "scheduled"
        return
    campaign_id = int(path.split("/")[3])
    n, e = Notification.__table__, Event.__table__
    with w.runtime.db.read() as conn:
        details = conn.execute(
            select(e.c.detail)
            .join(n, n.c.id == e.c.notification_id)
            .where(n.c.campaign_id == campaign_id, e.c.to_status == "cancelled")
        ).scalars()
        by = {d["by"] for d in details}
    assert by == {"admin" if caller == ENV else caller}


def attempts_unspent(w: World, caller: str, answer: httpx.Response, path: str) -> None:
    verification_id = int(path.split("/")[3])
    v = Verification.__table__
    with w.runtime.db.read() as conn:
        attempts = conn.execute(select(v.c.attempts).where(v.c.id == verification_id)).scalar()
    assert attempts == (1 if answer.status_code == 200 else 0), caller
    if answer.status_code == 200:
        assert answer.json()["status"] == "denied"


def idempotent(w: World, caller: str, answer: httpx.Response, path: str) -> None:
    """The owner's key again: the owner gets its first notification; any other key its own."""
    first = w.first_of_key
    if caller == OWNER:
        assert answer.json()["id"] == first
    elif answer.status_code == 202:
        assert answer.json()["id"] != first


def listed(w: World, caller: str, answer: httpx.Response, path: str) -> None:
    """The owner's campaign appears in the owner's list and an admin's, in no other."""
    if answer.status_code != 200:
        return
    ids = {c["id"] for c in answer.json()["campaigns"]}
    mine = w.listed_campaign
    assert (mine in ids) == (caller in (OWNER, ADMIN, ENV)), (caller, ids)
    if caller in (OTHER, READER):
        assert all(c["owner"] == caller for c in answer.json()["campaigns"])


def webhooks_listed(w: World, caller: str, answer: httpx.Response, path: str) -> None:
    """The owner's endpoints appear in the owner's list and an admin's, in no other."""
    if answer.status_code != 200:
        return
    mine = {e.id for e in EndpointStore(w.runtime.db).listed(OWNER)}
    ids = {e["id"] for e in answer.json()["webhooks"]}
    assert mine and (mine <= ids) == (caller in (OWNER, ADMIN, ENV)), (caller, ids)
    assert not mine & ids or caller in (OWNER, ADMIN, ENV)


def owner_key_used_once(w: World) -> tuple[str, Any]:
    body = one(idempotency_key=f"order-{next(_numbers)}")
    w.first_of_key = w.made("POST", "/v1/notifications", body)["id"]
    return "/v1/notifications", body


def list_campaigns(w: World) -> tuple[str, Any]:
    w.listed_campaign = w.campaign()
    return "/v1/campaigns?limit=200", None


def suppressed(w: World) -> tuple[str, Any]:
    to = number()
    w.made("POST", "/v1/suppressions", {"to": to}, by=ADMIN)
    return f"/v1/suppressions/{to}", None


CASES = [
    Case("POST /v1/notifications", lambda w: ("/v1/notifications", one()), ANYONE_SENDS),
    Case(
        "POST /v1/notifications (the owner's idempotency key)",
        owner_key_used_once,
        {**ANYONE_SENDS, OWNER: 200},
        then=idempotent,
    ),
    Case(
        "POST /v1/notifications:batch",
        lambda w: ("/v1/notifications:batch", {"notifications": [one(), one()]}),
        {**ANYONE_SENDS, OWNER: 200, OTHER: 200, ADMIN: 200, ENV: 200},
    ),
    on_one("GET /v1/notifications/{id}", World.notification, OWNED),
    on_one(
        "GET /v1/notifications/{id} (the reader's own)",
        lambda w: w.reader_own,
        {**OWNED, OWNER: 404, READER: 200},
    ),
    Case(
        "POST /v1/campaigns",
        lambda w: ("/v1/campaigns", campaign_body()),
        {c: 201 if s == 202 else s for c, s in ANYONE_SENDS.items()},
    ),
    Case("GET /v1/campaigns", list_campaigns, {**OWNED, OTHER: 200, READER: 200}, then=listed),
    on_one("GET /v1/campaigns/{id}", World.campaign, OWNED),
    on_one(
        "POST /v1/campaigns/{id}/pause",
        World.campaign,
        CONTROL,
        then=unchanged_unless_allowed("scheduled"),
    ),
    on_one(
        "POST /v1/campaigns/{id}/resume",
        lambda w: w.campaign(paused=True),
        CONTROL,
        then=unchanged_unless_allowed("paused"),
    ),
    on_one("POST /v1/campaigns/{id}/cancel", World.campaign, CONTROL, then=cancelled_by),
    Case(
        "POST /v1/verifications",
        lambda w: ("/v1/verifications", {"to": number(), "channel": "sms"}),
        ANYONE_SENDS,
    ),
    on_one("GET /v1/verifications/{id}", World.verification, OWNED),
    on_one(
        "POST /v1/verifications/{id}/check",
        World.verification,
        CHECK,
        # the HMAC of a random code: "000000" is wrong but for one chance in a million
        body={"code": "000000"},
        then=attempts_unspent,
    ),
    on_one("GET /v1/suppressions?campaign_id={id} (a count)", World.campaign, OWNED),
    Case(
        "POST /v1/suppressions",
        lambda w: ("/v1/suppressions", {"to": number()}),
        {**ADMIN_ONLY, ADMIN: 201, ENV: 201},
    ),
    Case("GET /v1/suppressions", lambda w: ("/v1/suppressions", None), ADMIN_ONLY),
    Case("DELETE /v1/suppressions/{to}", suppressed, {**ADMIN_ONLY, ADMIN: 204, ENV: 204}),
    Case(
        "POST /v1/webhooks",
        lambda w: ("/v1/webhooks", {"url": PUBLIC_HOOK}),
        {c: 201 if s == 202 else s for c, s in ANYONE_SENDS.items()},
    ),
    Case(
        "GET /v1/webhooks",
        lambda w: (w.webhook() and "/v1/webhooks", None),
        {**OWNED, OTHER: 200, READER: 200},
        then=webhooks_listed,
    ),
    on_one("GET /v1/webhooks/{id}", World.webhook, OWNED),
    on_one(
        "DELETE /v1/webhooks/{id}", World.webhook, {**CONTROL, OWNER: 204, ADMIN: 204, ENV: 204}
    ),
    on_one("POST /v1/webhooks/{id}/rotate", World.webhook, CONTROL),
    on_one("GET /v1/webhooks/{id}/deliveries", lambda w: w.delivery()[0], OWNED),
    Case(
        "POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry",
        lambda w: ("/v1/webhooks/{}/deliveries/{}/retry".format(*w.delivery()), None),
        {**CONTROL, OWNER: 202, ADMIN: 202, ENV: 202},
        missing=lambda w: (f"/v1/webhooks/{MISSING}/deliveries/1/retry", None),
    ),
    # the page is not /v1: no rate; a service's key is not an admin's
    Case("GET /ui (the operator page)", lambda w: ("/ui", None), {**ADMIN_ONLY, OVER: 403}),
]


def test_the_table_covers_every_v1_route(world: World) -> None:
    routes = {
        f"{method} {route.path}"
        for route in world.client.app.routes
        if getattr(route, "path", "").startswith("/v1/")
        for method in getattr(route, "methods", ())
    }
    covered = {" ".join(case.route.split(" ")[:2]).split("?")[0] for case in CASES}
    named = {
        r.replace("{notification_id}", "{id}")
        .replace("{campaign_id}", "{id}")
        .replace("{verification_id}", "{id}")
        .replace("{webhook_id}", "{id}")
        for r in routes
    }
    assert named <= covered, named - covered


@pytest.mark.parametrize("case", CASES, ids=[c.route for c in CASES])
def test_every_route_as_every_key(world: World, case: Case) -> None:
    for caller in CALLERS:
        path, body = case.prepare(world)
        answer = world.call(caller, case.method, path, body)
        assert answer.status_code == case.expect[caller], (caller, answer.text)
        if answer.status_code == 404 and case.missing is not None:
            missing_path, missing_body = case.missing(world)
            nothing = world.call(caller, case.method, missing_path, missing_body)
            assert (nothing.status_code, nothing.json()) == (404, answer.json()), caller
        if answer.status_code == 401:
            wrong = {"Authorization": "Bearer not-a-key"}
            stranger = world.client.request(case.method, path, json=body, headers=wrong)
            assert (stranger.json(), stranger.headers.get("www-authenticate")) == (
                answer.json(),
                answer.headers.get("www-authenticate"),
            )
        if answer.status_code == 429:  # its body was never read: the rate comes first
            assert int(answer.headers["retry-after"]) > 0
        if case.then is not None:
            case.then(world, caller, answer, path)


# -- what the table does not show -----------------------------------------------------------------


def test_revoked_unknown_and_malformed_keys_are_one_answer(world: World) -> None:
    """Nothing tells a revoked key from a key never made, a key of the right shape with
    a wrong secret, no scheme, or no header at all."""
    revoked = world.headers[REVOKED]["Authorization"]
    forms = [
        revoked,
        "Bearer nq_billing_" + "A" * 43,
        "Bearer " + "x" * 5000,
        revoked.removeprefix("Bearer "),
        "Basic " + revoked.removeprefix("Bearer "),
        "Bearer",
        None,
    ]
    answers = set()
    for form in forms:
        headers = {"Authorization": form} if form is not None else {}
        # a body the route would refuse as 422 if it were read: it is not
        reply = world.client.post("/v1/notifications", content=b"{not json", headers=headers)
        answers.add((reply.status_code, reply.text, reply.headers.get("www-authenticate")))
    assert len(answers) == 1, answers
    assert next(iter(answers))[0] == 401


def test_a_key_over_its_rate_is_429_with_retry_after_before_its_body_is_read(
    world: World,
) -> None:
    key = KeyStore(world.runtime.db).create("burst", {Scope.SEND}, rate="3/hour")[1]
    announce(world.runtime.redis)
    burst = {"Authorization": f"Bearer {key}"}
    wait_until(
        lambda: world.client.get(f"/v1/notifications/{MISSING}", headers=burst).status_code == 404,
        5,
        what="the new key",
    )  # the first request of three
    for _ in range(2):
        assert world.client.get(f"/v1/campaigns/{MISSING}", headers=burst).status_code == 404
    over = world.client.post("/v1/notifications", content=b"{not json", headers=burst)
    assert over.status_code == 429, over.text
    # a burst of three, then one every 20 minutes: the next one in (at most) 20 minutes
    assert 1100 < int(over.headers["retry-after"]) <= 1200
    assert over.json()["errors"][0]["field"] == "authorization"
    assert "3/hour" in over.json()["errors"][0]["message"]
    # the others are not held back by it
    assert world.call(OWNER, "POST", "/v1/notifications", one()).status_code == 202


def test_a_daily_quota_is_taken_all_or_none_and_given_back_for_what_was_not_stored(
    world: World,
) -> None:
    key = KeyStore(world.runtime.db).create("metered", {Scope.SEND}, daily_quota=3)[1]
    announce(world.runtime.redis)
    metered = {"Authorization": f"Bearer {key}"}
    post = world.client.post
    wait_until(
        lambda: world.client.get(f"/v1/campaigns/{MISSING}", headers=metered).status_code == 404,
        5,
        what="the new key",
    )
    first = post("/v1/notifications", json=one(idempotency_key="q-1"), headers=metered)
    assert first.status_code == 202
    # a repeat stores nothing and costs nothing; a refused item neither
    again = post("/v1/notifications", json={**one(), "idempotency_key": "q-1"}, headers=metered)
    assert again.status_code in (200, 409)
    bad = post("/v1/notifications", json=one(to="12345"), headers=metered)
    assert bad.status_code == 422
    # three in the batch do not fit beside the first: none of them is stored
    batch = {"notifications": [one(), one(), one()]}
    over = post("/v1/notifications:batch", json=batch, headers=metered)
    assert over.status_code == 429, over.text
    assert int(over.headers["retry-after"]) <= 86400
    assert "quota of 3" in over.json()["errors"][0]["message"]
    two = post("/v1/notifications:batch", json={"notifications": [one(), one()]}, headers=metered)
    assert two.json()["accepted"] == 2
    assert post("/v1/notifications", json=one(), headers=metered).status_code == 429
    n = Notification.__table__
    with world.runtime.db.read() as conn:
        stored = conn.execute(select(n.c.id).where(n.c.owner == "metered")).all()
    assert len(stored) == 3
    # another key's quota is its own
    assert world.call(OWNER, "POST", "/v1/notifications", one()).status_code == 202


def test_the_log_names_the_key_that_paused_and_checked_never_the_key(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    campaign_id = world.campaign()
    verification_id = world.verification()
    with caplog.at_level(logging.INFO):
        world.call(OWNER, "POST", f"/v1/campaigns/{campaign_id}/pause")
        world.call(OWNER, "POST", f"/v1/verifications/{verification_id}/check", {"code": "0000"})
    text = caplog.text
    assert f"campaign {campaign_id} paused by {OWNER}" in text
    assert f"verification {verification_id} checked by {OWNER}" in text
    for headers in world.headers.values():
        assert headers["Authorization"].removeprefix("Bearer ") not in text


def test_metrics_and_docs_behind_a_key_need_an_admin_one(database_url: str, redis_url: str) -> None:
    settings = embedded_settings(
        database_url, redis_url, ops_routes_need_key=True, metrics_token="scrape-only-9"
    )
    runtime = Runtime.build(settings)
    keys = KeyStore(runtime.db)
    service = {"Authorization": f"Bearer {keys.create('billing', {Scope.SEND})[1]}"}
    admin = {"Authorization": f"Bearer {keys.create('ops', {Scope.ADMIN})[1]}"}
    try:
        with TestClient(create_app(settings, runtime)) as client:
            for path in ("/metrics", "/docs", "/openapi.json"):
                assert client.get(path, headers=service).status_code == 403, path
                assert client.get(path, headers=admin).status_code == 200, path
                assert client.get(path).status_code == 401, path
            scrape = {"Authorization": "Bearer scrape-only-9"}
            assert client.get("/metrics", headers=scrape).status_code == 200
    finally:
        runtime.close()


def test_keys_list_shows_when_a_key_was_last_used_never_the_key(
    database_url: str, redis_url: str
) -> None:
    runtime = Runtime.build(embedded_settings(database_url, redis_url))
    keys = KeyStore(runtime.db)
    key = keys.create("billing", {Scope.SEND})[1]
    keys.create("idle", {Scope.SEND})
    try:
        with TestClient(create_app(runtime.settings, runtime)) as client:
            headers = {"Authorization": f"Bearer {key}"}
            assert client.get(f"/v1/notifications/{MISSING}", headers=headers).status_code == 404
        # written when the API stops (and once a minute while it runs)
        used = {r.name: r.last_used_at for r in keys.listed()}
        assert used["billing"] is not None and used["idle"] is None
        assert all(key not in str(r.public()) for r in keys.listed())
    finally:
        runtime.close()
