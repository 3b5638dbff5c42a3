"""The API while a dependency is away: 503 with ``Retry-After`` and a one-line reason
naming it (never a 500), ``/healthz`` 200 and ``/readyz`` naming it, one WARNING when it
goes and one INFO when it is back; and a Redis that answers but refuses writes (a
demoted master: ``READONLY``; ``maxmemory`` reached: ``OOM``) stores nothing and says so,
from the API and from ``notifyq send``."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api import callbacks
from api.app import create_app
from api.journal_replay import replay
from providers.base import Reply
from store.availability import store_away
from store.schema import Notification, Receipt
from store.templates import TemplateStore
from tasks import reports
from tasks.journal import CallbackJournal
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS, embedded_settings
from tests.services import NOTIFYQ, PostgresDatabase, RedisServer, free_port, wait_until

AUTH = {"Authorization": "Bearer api-key-one-71f2"}
SEND = {"provider": "ihuyi", "to": "13800138000", "content": "您的订单已发货"}


def stored(runtime: Runtime) -> int:
    with runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Notification)).scalar_one()


def refused(answer, field: str) -> str:  # type: ignore[no-untyped-def]
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    [error] = answer.json()["errors"]
    assert error["field"] == field
    assert "\n" not in error["message"]
    return str(error["message"])


def records(caplog: pytest.LogCaptureFixture, level: int, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.getMessage().startswith(start)
    ]


def test_store_away_is_503_naming_it_then_202_once_back_with_one_warning_and_one_info(
    own_postgres: PostgresDatabase, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    runtime = Runtime.build(embedded_settings(own_postgres.url, redis_url))
    try:
        with TestClient(create_app(runtime.settings, runtime)) as client:
            assert client.post("/v1/notifications", json=SEND, headers=AUTH).status_code == 202

            own_postgres.stop()
            for turn in range(5):
                body = {**SEND, "idempotency_key": f"outage-{turn}"}
                answer = client.post("/v1/notifications", json=body, headers=AUTH)
                assert "the store is unavailable" in refused(answer, "store")
            refused(client.get("/v1/notifications/1", headers=AUTH), "store")
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["store"].startswith("unavailable: ")
            assert ready.json()["redis"] == "ok"

            own_postgres.start()
            wait_until(lambda: client.get("/readyz").status_code == 200, 30, what="/readyz again")
            answer = client.post(
                "/v1/notifications", json=SEND | {"to": "13800138001"}, headers=AUTH
            )
            assert answer.status_code == 202, answer.text
    finally:
        runtime.close()
    assert len(records(caplog, logging.WARNING, "the store is unavailable")) == 1
    assert len(records(caplog, logging.INFO, "the store is back")) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own: it is made a replica (read-only) and filled up."""
    server = RedisServer(tmp_path / "redis", appendfsync=None)
    server.start()
    yield server
    server.stop()


def send_from_the_cli(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NOTIFYQ, "send", "ihuyi", "--to", "13800138000", "--content", "您的订单已发货"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize("refusal", ["a read-only replica", "out of memory"])
def test_redis_refusing_writes_is_503_storing_nothing_then_202_once_it_clears(
    own_redis: RedisServer, sqlite_url: str, tmp_path: Path, refusal: str
) -> None:
    admin = redis.Redis.from_url(own_redis.url)
    runtime = Runtime.build(embedded_settings(sqlite_url, own_redis.url))
    env = {
        **os.environ,
        **TEST_CREDENTIALS,
        "NOTIFYQ_REDIS_URL": own_redis.url,
        "NOTIFYQ_DATABASE_URL": sqlite_url,
    }
    try:
        with TestClient(create_app(runtime.settings, runtime)) as client:
            # a master demoted after a fail-over, its new master away; or a full one
            if refusal == "a read-only replica":
                admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
            else:
                admin.config_set("maxmemory", "1")  # the default policy: noeviction
            answer = client.post("/v1/notifications", json=SEND, headers=AUTH)
            assert f"Redis refuses writes ({refusal}" in refused(answer, "redis")
            batch = client.post(
                "/v1/notifications:batch", json={"notifications": [SEND]}, headers=AUTH
            )
            refused(batch, "redis")
            if refusal == "a read-only replica":  # the CLI's answer: one case is enough
                sent = send_from_the_cli(env, tmp_path)
                assert sent.returncode == 1, sent.stdout + sent.stderr
                assert sent.stderr.count("\n") == 1 and "Redis refuses writes" in sent.stderr
            assert stored(runtime) == 0, "nothing stored while Redis refused writes"

            if refusal == "a read-only replica":
                admin.execute_command("REPLICAOF", "NO", "ONE")
            else:
                admin.config_set("maxmemory", "0")
            answer = client.post("/v1/notifications", json=SEND, headers=AUTH)
            assert answer.status_code == 202, answer.text
            assert stored(runtime) == 1
    finally:
        runtime.close()


def receipts(runtime: Runtime) -> int:
    with runtime.db.read() as conn:
        return conn.execute(select(func.count()).select_from(Receipt)).scalar_one()


def test_callbacks_while_the_store_is_away_are_journalled_then_applied_once_and_refused_without_redis(
    own_postgres: PostgresDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    own = RedisServer(tmp_path / "redis", appendfsync="always")  # the journal's AOF
    own.start()
    runtime = Runtime.build(embedded_settings(own_postgres.url, own.url))
    journal = CallbackJournal(runtime.redis)
    callback = f"/callbacks/{TEST_CREDENTIALS['NOTIFYQ_CALLBACK_TOKEN']}/ihuyi/receipt"
    template = f"/callbacks/{TEST_CREDENTIALS['NOTIFYQ_CALLBACK_TOKEN']}/ihuyi/template"
    try:
        with TestClient(create_app(runtime.settings, runtime)) as client:
            own_postgres.stop()
            for ref in ("9001", "9002", "9001"):  # a provider's repeat journals twice
                answer = client.post(callback, data={"voiceid": ref, "code": "2"})
                assert (answer.status_code, answer.text) == (200, "success")
            answer = client.post(template, data={"templateid": "77", "code": "2", "msg": "ok"})
            assert (answer.status_code, answer.text) == (200, "success")
            malformed = client.post(callback, data={"voiceid": "", "code": "2"})
            assert malformed.status_code == 400, "a malformed push is refused, never journalled"
            assert journal.waiting() == 4

            own.stop()  # Redis away too: not success, so the provider pushes again
            answer = client.post(callback, data={"voiceid": "9003", "code": "2"})
            assert answer.status_code == 503 and answer.text != "success"

            own.start()
            own_postgres.start()
            wait_until(lambda: journal.waiting() == 0, 30, what="the journal applied")
            assert receipts(runtime) == 2, "9001 twice is one receipt"
            assert TemplateStore(runtime.db).get("ihuyi", "77") is not None
    finally:
        runtime.close()
        own.stop()
    assert len(records(caplog, logging.WARNING, "the store is unavailable")) == 1
    applied = records(caplog, logging.INFO, "applied ")
    assert sum(int(line.split()[1]) for line in applied) == 4, applied


def test_a_report_page_pulled_as_the_store_goes_is_kept_in_redis_and_journalled_once_back(
    own_postgres: PostgresDatabase, redis_url: str
) -> None:
    runtime = Runtime.build(embedded_settings(own_postgres.url, redis_url))
    journal = CallbackJournal(runtime.redis)
    page = '{"code": 200, "data": []}'
    try:
        own_postgres.stop()
        with pytest.raises(Exception) as raised:
            reports._journal(runtime, "apispace-voice", Reply(200, page.encode()))
        assert store_away(raised.value)
        assert [e.route for e in journal.entries()] == ["report:apispace-voice"]

        own_postgres.start()
        wait_until(lambda: replay(runtime, journal, callbacks.apply) == 1, 30, what="replayed")
        [row] = runtime.receipts.unparsed_journal("apispace-voice")
        assert row.body == page
        assert journal.waiting() == 0
    finally:
        runtime.close()


def test_two_api_processes_replaying_one_journal_at_once_store_each_receipt_once(
    runtime: Runtime,
) -> None:
    journal = CallbackJournal(runtime.redis)
    refs = [str(9100 + i) for i in range(40)]
    for ref in refs + refs[:10]:  # a provider's repeats are journalled as they come
        journal.write("ihuyi", {"voiceid": ref, "code": "2"})
    start = threading.Barrier(2)
    counts: list[int] = []

    def one_process() -> None:
        start.wait()
        counts.append(replay(runtime, journal, callbacks.apply))

    threads = [threading.Thread(target=one_process) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(counts) >= 50, counts  # each entry applied at least once, some twice
    assert journal.waiting() == 0
    assert receipts(runtime) == len(refs)
