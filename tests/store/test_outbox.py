"""The webhook outbox: events are written by the transaction that changes a status, for
the owner's endpoints that want them, once per change, with the row's version and the
number masked; a delivery's attempts, retries, failure, replay and the endpoint's
disabling."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from store import Change, Database, Expect, NewNotification, NotificationStore, Status
from store.campaigns import CampaignStore
from store.deliveries import AttemptResult, Delivery, DeliveryStatus, DeliveryStore
from store.migrate import ensure_schema
from store.schema import WebhookDelivery
from store.verifications import NewVerification, VerificationStore
from store.webhooks import BadEndpoint, EndpointStore

WAITS = (5.0, 300.0)
DAY = 86400.0


@pytest.fixture
def db(database_url: str) -> Database:
    ensure_schema(database_url)
    return Database(database_url)


def enqueue(store: NotificationStore, owner: str, key: str | None = None) -> int:
    (made,) = store.insert(
        [NewNotification("ihuyi", "+8613800138000", content="验证码 123456", owner=owner,
                         idempotency_key=key)]
    )  # fmt: skip
    return made.id


def send(store: NotificationStore, notification_id: int) -> None:
    row = store.get(notification_id)
    store.transition([Change(notification_id, Status.SENDING, Expect.row(row))])
    row = store.get(notification_id)
    store.transition([Change(notification_id, Status.SENT, Expect.row(row))])


def bodies(db: Database) -> list[dict]:
    D = WebhookDelivery.__table__
    with db.read() as conn:
        return [json.loads(b) for b in conn.execute(select(D.c.body).order_by(D.c.id)).scalars()]


def test_a_sent_notification_makes_one_event_for_each_endpoint_of_its_owner_that_wants_it(
    db: Database,
) -> None:
    store, endpoints = NotificationStore(db), EndpointStore(db)
    endpoints.create("shop", "https://a.example/hook")
    endpoints.create("shop", "https://b.example/hook", events=["notification.delivered"])
    endpoints.create("bank", "https://c.example/hook")
    notification_id = enqueue(store, "shop", key="order-1")
    send(store, notification_id)
    send(store, notification_id)  # the same change again, from a stale read: nothing more
    (event,) = bodies(db)
    assert event["type"] == "notification.sent"
    data = event["data"]
    assert data["id"] == notification_id and data["status"] == "sent"
    assert data["to"] == "138****8000" and data["idempotency_key"] == "order-1"
    assert data["version"] == store.get(notification_id).version == 2
    assert "123456" not in json.dumps(event)


def test_no_endpoint_no_event_and_waiting_statuses_make_none(db: Database) -> None:
    store = NotificationStore(db)
    EndpointStore(db).create("shop", "https://a.example/hook")
    notification_id = enqueue(store, "admin")
    send(store, notification_id)
    other = enqueue(store, "shop")
    row = store.get(other)
    store.transition([Change(other, Status.SENDING, Expect.row(row))])
    assert bodies(db) == []


def test_an_event_is_not_written_when_its_change_rolls_back(db: Database) -> None:
    store = NotificationStore(db)
    EndpointStore(db).create("shop", "https://a.example/hook")
    notification_id = enqueue(store, "shop")
    row = store.get(notification_id)
    store.transition([Change(notification_id, Status.SENDING, Expect.row(row))])
    row = store.get(notification_id)
    with pytest.raises(RuntimeError), db.write() as conn:
        store.transition([Change(notification_id, Status.SENT, Expect.row(row))], conn=conn)
        assert len(bodies_in(conn)) == 1  # written in the change's own transaction
        raise RuntimeError("the transaction fails after the change")
    assert bodies(db) == [] and store.get(notification_id).status == Status.SENDING


def bodies_in(conn) -> list[str]:  # type: ignore[no-untyped-def]
    return list(conn.execute(select(WebhookDelivery.__table__.c.body)).scalars())


@pytest.mark.parametrize("count", [3, 70])  # a few rows, and more than one statement takes
def test_receipts_moved_alike_make_delivered_events(db: Database, count: int) -> None:
    store = NotificationStore(db)
    EndpointStore(db).create("shop", "https://a.example/hook")
    ids = [enqueue(store, "shop") for _ in range(count)]
    for notification_id in ids:
        send(store, notification_id)
    with db.write() as conn:
        store.move_alike(conn, ids, source=Status.SENT, to=Status.DELIVERED, reason=None,
                         details={}, now=1000.0)  # fmt: skip
    delivered = [e for e in bodies(db) if e["type"] == "notification.delivered"]
    assert sorted(e["data"]["id"] for e in delivered) == ids
    assert {e["data"]["version"] for e in delivered} == {3}


def test_unknown_events_are_refused_naming_the_field(db: Database) -> None:
    with pytest.raises(BadEndpoint) as refused:
        EndpointStore(db).create("shop", "https://a.example/", events=["notification.lost"])
    assert refused.value.field == "events"


def pending_one(db: Database) -> tuple[DeliveryStore, int, float]:
    """One delivery claimed, and a moment after its event (on the ledger's clock)."""
    store, deliveries = NotificationStore(db), DeliveryStore(db)
    EndpointStore(db).create("shop", "https://a.example/hook")
    send(store, enqueue(store, "shop"))
    with db.read() as conn:
        made = conn.execute(select(WebhookDelivery.__table__.c.created_at)).scalar_one()
    ((claimed, _),) = deliveries.claim_due(now=made, lease=30, limit=10)
    assert deliveries.claim_due(now=made + 29, lease=30, limit=10) == []  # leased
    return deliveries, claimed, made + 1


FAILED = AttemptResult(503, "down", 0.01)


def one(deliveries: DeliveryStore, delivery_id: int, now: float) -> Delivery | None:
    found = deliveries.pending([delivery_id], now=now)
    return found[0] if found else None


def test_failures_wait_the_next_wait_then_fail_and_a_replay_starts_over(db: Database) -> None:
    deliveries, delivery_id, now = pending_one(db)
    for wait in WAITS:
        delivery = one(deliveries, delivery_id, now)
        assert delivery is not None
        (status,) = deliveries.record([(delivery, FAILED)], now=now, waits=WAITS, disable_after=DAY)
        assert status is DeliveryStatus.PENDING
        assert deliveries.claim_due(now=now + wait - 0.5, lease=30, limit=10) == []
        assert [i for i, _ in deliveries.claim_due(now=now + wait, lease=30, limit=10)] == [
            delivery_id
        ]
        now += wait
    delivery = one(deliveries, delivery_id, now)
    assert delivery is not None
    assert deliveries.record([(delivery, FAILED)], now=now, waits=WAITS, disable_after=DAY) == [
        DeliveryStatus.FAILED
    ]
    endpoint_id = delivery.endpoint_id
    (logged,) = deliveries.log(endpoint_id, status=DeliveryStatus.FAILED)
    assert [a["status_code"] for a in logged["attempts"]] == [503, 503, 503]
    assert deliveries.replay(endpoint_id, delivery_id, now=now)
    again = one(deliveries, delivery_id, now)
    assert again is not None and again.message_id == delivery.message_id and again.attempts == 0


def test_two_copies_of_one_attempt_record_one_outcome(db: Database) -> None:
    deliveries, delivery_id, now = pending_one(db)
    delivery = one(deliveries, delivery_id, now)
    assert delivery is not None
    ok = AttemptResult(200, "ok", 0.01)
    assert deliveries.record([(delivery, ok)], now=now, waits=WAITS, disable_after=DAY) == [
        DeliveryStatus.DELIVERED
    ]
    assert deliveries.record([(delivery, FAILED)], now=now, waits=WAITS, disable_after=DAY) == [
        None
    ]
    assert one(deliveries, delivery_id, now) is None
    assert deliveries.backlog() == (0, None)


def test_an_endpoint_failing_everything_past_the_limit_is_disabled_and_gets_no_more(
    db: Database,
) -> None:
    deliveries, delivery_id, now = pending_one(db)
    delivery = one(deliveries, delivery_id, now)
    assert delivery is not None
    deliveries.record([(delivery, FAILED)], now=now, waits=(DAY,) * 5, disable_after=3 * DAY)
    endpoint = EndpointStore(db).get(delivery.endpoint_id, "shop")
    assert endpoint is not None and endpoint.failing_since == now and endpoint.disabled_at is None
    later = now + 3 * DAY
    delivery = one(deliveries, delivery_id, later)
    assert delivery is not None
    deliveries.record([(delivery, FAILED)], now=later - 1, waits=(DAY,) * 5, disable_after=3 * DAY)
    endpoint = EndpointStore(db).get(delivery.endpoint_id, None)
    assert endpoint is not None and endpoint.disabled_at is None  # a second short of 3 days
    delivery = one(deliveries, delivery_id, later)
    assert delivery is not None
    deliveries.record([(delivery, FAILED)], now=later, waits=(DAY,) * 5, disable_after=3 * DAY)
    endpoint = EndpointStore(db).get(delivery.endpoint_id, None)
    assert endpoint is not None and endpoint.public()["disabled"] is True
    assert one(deliveries, delivery_id, later) is None
    store = NotificationStore(db)
    send(store, enqueue(store, "shop"))
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(WebhookDelivery)).scalar() == 1


def test_another_keys_endpoint_is_not_found_listed_or_deleted(db: Database) -> None:
    endpoints = EndpointStore(db)
    mine, secret = endpoints.create("shop", "https://a.example/hook")
    assert secret.startswith("whsec_")
    assert endpoints.get(mine.id, "bank") is None and endpoints.listed("bank") == []
    assert (
        not endpoints.delete(mine.id, "bank")
        and endpoints.rotate(mine.id, "bank", overlap=1) is None
    )
    assert [e.id for e in endpoints.listed(None)] == [mine.id]
    assert endpoints.delete(mine.id, "shop") and endpoints.listed(None) == []


def test_an_approved_or_expired_verification_and_a_completed_campaign_make_their_events(
    db: Database,
) -> None:
    EndpointStore(db).create("shop", "https://a.example/hook")
    EndpointStore(db).create("bank", "https://b.example/hook")
    notification_id = enqueue(NotificationStore(db), "shop")
    codes = VerificationStore(db)
    new = NewVerification("+8613800138000", "login", "sms", "apispace-sms", "s", "h", 6, 5, 9e9,
                          owner="shop")  # fmt: skip
    with db.write() as conn:
        approved = codes.insert(conn, new, notification_id=notification_id, fallback_id=None, now=1)
        expired = codes.insert(conn, new, notification_id=notification_id, fallback_id=None, now=1)
    for verification_id, status in ((approved, "approved"), (expired, "expired")):
        row = codes.get(verification_id)
        with db.write() as conn:
            assert codes.move(conn, row, now=2.0, status=status)
            assert not codes.move(conn, row, now=2.0, status=status)  # stale: no second event
    campaigns = CampaignStore(db, NotificationStore(db))
    campaign_id = campaigns.create(name="reminders", provider="ihuyi", template=None,
                                   content="x", options={}, route=None, rate=None, cron=None,
                                   next_run_at=None, owner="shop")  # fmt: skip
    empty = campaigns.create(name="nobody", provider="ihuyi", template=None, content="x",
                             options={}, route=None, rate=None, cron=None, next_run_at=None,
                             owner="shop")  # fmt: skip
    campaigns.finish_import(empty, total=0, rejected=2, errors=[], status="completed")
    campaigns.set_status(campaign_id, "running")
    assert campaigns.set_status(campaign_id, "completed", expect=["running"])
    assert not campaigns.set_status(campaign_id, "completed", expect=["running"])
    events = bodies(db)
    assert [(e["type"], e["data"]["id"]) for e in events] == [
        ("verification.approved", approved),
        ("verification.expired", expired),
        ("campaign.completed", empty),
        ("campaign.completed", campaign_id),
    ]
    assert events[0]["data"]["to"] == "138****8000" and events[0]["data"]["version"] == 1
    assert "h" not in events[0]["data"].values()  # never the code's HMAC
    assert events[2]["data"]["rejected"] == 2
    assert events[3]["data"]["statuses"] == {} and events[3]["data"]["name"] == "reminders"


def test_an_endpoint_deleted_while_its_deliveries_are_tried_records_nothing(db: Database) -> None:
    deliveries, delivery_id, now = pending_one(db)
    delivery = one(deliveries, delivery_id, now)
    assert delivery is not None
    assert EndpointStore(db).delete(delivery.endpoint_id, None)
    ok = AttemptResult(200, "ok", 0.01)
    assert deliveries.record([(delivery, ok)], now=now, waits=WAITS, disable_after=DAY) == [None]
    assert deliveries.backlog() == (0, None)
