"""Keys across processes: two ``notifyq api`` processes on one store and one Redis take up
a key made with ``notifyq keys create`` without a restart, serve what one made to the
same key on the other, and refuse a revoked key within a second of the revoke — also
while Redis is away, and again once it is back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from api.keyring import announce
from store.keys import KeyStore, Scope
from tests.conftest import System
from tests.services import RedisServer, free_port, wait_until

TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"
MISSING = "/v1/notifications/987654321"
#: how soon a revoke must reach every API process (README, "Keys")
WITHIN = 1.0


def answers(url: str, key: str, path: str = MISSING) -> int:
    return httpx.get(url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def refused_within(urls: list[str], key: str, revoke: Callable[[], None]) -> list[float]:
    """Revoke, then poll every API until each refuses ``key``: the seconds each took,
    counted from the moment the revoke had returned (committed and announced)."""
    revoke()
    start = time.monotonic()
    took: dict[str, float] = {}
    with httpx.Client(timeout=10) as client:
        while len(took) < len(urls) and time.monotonic() - start < 10 * WITHIN:
            for url in urls:
                if url in took:
                    continue
                reply = client.get(url + MISSING, headers={"Authorization": f"Bearer {key}"})
                if reply.status_code == 401:
                    took[url] = time.monotonic() - start
                else:
                    assert reply.status_code == 404, reply.text
    return [took.get(url, float("inf")) for url in urls]


@pytest.fixture
def two_apis(tmp_path: Path) -> Iterator[tuple[System, RedisServer, list[str]]]:
    """Two API processes, on a Redis of this test's own (it is stopped on purpose)."""
    server = RedisServer(tmp_path / "redis", appendfsync=None)
    server.start()
    system = System(tmp_path, server.url, f"sqlite:///{tmp_path / 'notifyq.db'}")
    ports = [system.api_port, free_port()]
    try:
        with system.stack.together():
            for port in ports:
                system.stack.api(port)
        yield system, server, [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        system.close()
        server.stop()


def test_a_key_made_and_revoked_from_the_command_line_reaches_both_apis(
    two_apis: tuple[System, RedisServer, list[str]],
) -> None:
    system, _, urls = two_apis
    made = system.cli("keys", "create", "billing", "--scope", "send", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    assert key.startswith("nq_billing_") and len(key) >= len("nq_billing_") + 43
    wait_until(lambda: all(answers(u, key) == 404 for u in urls), 10, what="both take the key")

    created = httpx.post(
        urls[0] + "/v1/notifications",
        json={"provider": "ihuyi", "to": "13800138000", "content": TEXT},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert created.status_code == 202, created.text
    assert answers(urls[1], key, f"/v1/notifications/{created.json()['id']}") == 200

    listed = system.cli("keys", "list", "--json")
    assert [k["name"] for k in json.loads(listed.stdout)["keys"]] == ["billing"]
    assert key not in listed.stdout

    revoked = system.cli("keys", "revoke", "billing")
    assert revoked.returncode == 0, revoked.stderr
    # how soon is the next test's business (without a process start to time around);
    # here: the command's revoke reaches both, whatever else the machine is doing
    wait_until(lambda: all(answers(u, key) == 401 for u in urls), 10, what="both refuse the key")
    again = system.cli("keys", "revoke", "billing")
    assert again.returncode == 2 and "name" in again.stderr


def test_a_revoke_is_refused_by_both_apis_within_a_second(
    two_apis: tuple[System, RedisServer, list[str]],
) -> None:
    system, _, urls = two_apis
    store = KeyStore(system.runtime.db)
    key = store.create("shop", {Scope.SEND})[1]
    announce(system.runtime.redis)
    wait_until(lambda: all(answers(u, key) == 404 for u in urls), 10, what="both take the key")

    def revoke() -> None:  # what `notifyq keys revoke` does, without its process start
        store.revoke("shop")
        announce(system.runtime.redis)

    took = refused_within(urls, key, revoke)
    assert max(took) <= WITHIN, took


def test_while_redis_is_away_a_revoke_still_reaches_both_apis(
    two_apis: tuple[System, RedisServer, list[str]],
) -> None:
    """Nothing can be announced: each API reloads the keys from the store every second
    while it cannot read Redis. Once Redis is back, a revoke is announced as ever."""
    system, server, urls = two_apis
    store = KeyStore(system.runtime.db)
    first = store.create("first", {Scope.SEND})[1]
    second = store.create("second", {Scope.SEND})[1]
    announce(system.runtime.redis)
    wait_until(
        lambda: all(answers(u, k) == 404 for u in urls for k in (first, second)),
        10,
        what="both take the keys",
    )
    server.stop()
    took = refused_within(urls, first, lambda: store.revoke("first"))
    # the API notices Redis is away at its next read (every 0.25 s), then reloads each second
    assert max(took) <= WITHIN + 0.5, took
    assert all(answers(u, second) == 404 for u in urls)

    server.start()  # the same port, an empty Redis
    wait_until(system.runtime.redis.ping, 10, what="redis back")

    def revoke() -> None:
        store.revoke("second")
        announce(system.runtime.redis)

    took = refused_within(urls, second, revoke)
    assert max(took) <= WITHIN, took
