"""The store goes away under load and comes back: a PostgreSQL of the test's own, stopped
as a crash stops it (``pg_ctl stop -m immediate``) while a client keeps posting and the
sandbox keeps pushing receipts, then started again.

- every ``POST /v1/notifications`` is answered 202, or 503 with ``Retry-After`` — never
  a 500;
- every receipt pushed while the store was away is answered ``success`` at the first
  try (journalled in Redis) and applied once it is back;
- no report is pulled (pull-and-delete) while it is away, and pulls resume after;
- the API, the worker and beat each log one WARNING when it goes and one INFO when it is
  back, and no traceback.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import select

from store.schema import Receipt
from tasks.journal import JOURNAL_KEY
from tests.conftest import TEST_CREDENTIALS, System
from tests.services import PostgresDatabase, wait_until

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}
GONE = "the store is unavailable"
#: a poll that asked the store just before it went may still pull within this
PULL_GRACE = 3.0
BACK = "the store is back"


class Load:
    """A client posting notifications one after another until stopped; every answer kept."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.answers: list[httpx.Response] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.system.api_url, headers=AUTH, timeout=30) as client:
            turn = 0
            while not self.stop.wait(0.02):
                body = {
                    "provider": "ihuyi",
                    "to": f"1390000{turn:04d}",
                    "content": "您的订单已发货",
                }
                self.answers.append(client.post("/v1/notifications", json=body))
                turn += 1

    def accepted(self) -> list[int]:
        return [a.json()["id"] for a in self.answers if a.status_code == 202]


def sent_now(system: System, ids: list[int]) -> list[int]:
    """The notifications ``sent`` (their receipts to come), once there are three."""
    sent = [i for i, status in system.statuses(ids).items() if status == "sent"]
    return sent if len(sent) >= 3 else []


def journalled_refs(client: redis.Redis) -> set[str]:
    """The ihuyi references of the receipts waiting in the journal."""
    return {str(json.loads(raw)["data"]["voiceid"]) for raw in client.hvals(JOURNAL_KEY)}


def test_the_store_stopped_under_load_answers_503_keeps_receipts_and_says_it_once(
    own_postgres: PostgresDatabase, make_system: Any
) -> None:
    # a dispatch that met the store away is re-driven by the sweeper after its grace, and
    # a call left ``sending`` resolved after its timeout: short ones, for a short test
    system: System = make_system(
        database_url=own_postgres.url,
        sweep_interval="1",
        sweep_grace="3",
        sending_timeout="10",
        apispace_report_interval="1",  # report pulls on beat every second, to be held back
    )
    system.start(workers=1, concurrency=8, beat=True, sandbox_args=("--receipt-delay", "1.5"))
    broker = redis.Redis.from_url(system.env["NOTIFYQ_REDIS_URL"])
    api, worker, beat = (
        next(p for p in system.stack.procs if p.name == name) for name in ("api", "worker", "beat")
    )
    load = Load(system)
    load.thread.start()
    try:
        wait_until(lambda: len(load.accepted()) >= 20, 60, what="20 notifications accepted")
        # calls recorded sent whose receipts are still to come (1.5 s after each call):
        # the store goes now, so those receipts arrive while it is away
        awaiting = wait_until(
            lambda: sent_now(system, load.accepted()), 60, what="calls sent, receipts due"
        )
        own_postgres.stop()
        stopped = time.time()
        # the outage lasts until each process has said so and receipts wait in the journal
        wait_until(
            lambda: all(GONE in p.text() for p in (api, worker, beat)) and broker.hlen(JOURNAL_KEY),
            60,
            what="every process to see the store away, and a receipt journalled",
        )
        during = journalled_refs(broker)
        # an outage of a few seconds at least, for the report polls it holds back
        wait_until(lambda: time.time() > stopped + PULL_GRACE + 2, 10, what="a longer outage")
        restarted = time.time()
        own_postgres.start()
        wait_until(
            lambda: all(BACK in p.text() for p in (api, worker, beat)), 60, what="all see it back"
        )
    finally:
        load.stop.set()
        load.thread.join(60)

    codes = {a.status_code for a in load.answers}
    assert codes <= {202, 503}, codes
    refused = [a for a in load.answers if a.status_code == 503]
    assert refused and all(int(a.headers["Retry-After"]) > 0 for a in refused)

    final = {"delivered", "undelivered", "failed", "unknown"}
    system.wait_for(load.accepted(), final, timeout=120)
    wait_until(lambda: broker.hlen(JOURNAL_KEY) == 0, 60, what="the journal applied")
    with system.runtime.db.read() as conn:
        rows = system.runtime.notifications.load(conn, load.accepted())
        kept = set(
            conn.execute(
                select(Receipt.provider_ref).where(
                    Receipt.provider == "ihuyi", Receipt.provider_ref.in_(during)
                )
            ).scalars()
        )
    assert during and kept == during, "every receipt journalled is stored"
    # and applied to its notification — where the notification's ``sent`` and its
    # reference were committed before the store went (a call whose ``sent`` the outage
    # cut off ends ``unknown``, with no reference for its receipt to name)
    by_ref = {row.provider_ref: row.status.value for row in rows if row.provider_ref}
    assert all(by_ref[ref] == "delivered" for ref in during if ref in by_ref), (during, by_ref)
    statuses = system.statuses(awaiting)
    assert set(statuses.values()) == {"delivered"}, statuses
    pulls = [c["at"] for c in system.ledger("apispace-voice") if c["api"] == "report"]
    assert not [at for at in pulls if stopped + PULL_GRACE < at < restarted], "no pull meanwhile"
    assert any(at > restarted for at in pulls), "pulls resume once the store is back"
    pushes = [p for p in system.sandbox_pushes() if p["url"].startswith("ihuyi")]
    assert all(p["ok"] and p["attempt"] == 1 for p in pushes), "every push answered success"

    for proc in (api, worker, beat):
        log = proc.text()
        assert log.count(GONE) == 1, (proc.name, log[-3000:])
        assert log.count(BACK) == 1, (proc.name, log[-3000:])
        assert "Traceback" not in log, (proc.name, log[-3000:])
