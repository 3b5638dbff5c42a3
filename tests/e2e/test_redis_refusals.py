"""A Redis that answers but refuses writes — a master demoted to replica after a
fail-over (``READONLY``) — under a running system:
enqueueing answers 503 and stores nothing meanwhile, and once it clears the workers
carry on: every notification accepted before, and after, ends delivered."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import TEST_CREDENTIALS, System, own_system
from tests.services import free_port, wait_until

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TEST_CREDENTIALS['NOTIFYQ_API_KEYS'].split(',')[0]}"}


def post(system: System, client: httpx.Client, to: str) -> httpx.Response:
    body = {"provider": "ihuyi", "to": to, "content": "您的订单已发货"}
    return client.post(f"{system.api_url}/v1/notifications", json=body, headers=AUTH)


def test_workers_carry_on_once_redis_takes_writes_again_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    """The fail-over's case, end to end; both refusals are met at the API's own level
    (tests/api/test_outages.py)."""
    with own_system(tmp_path, sweep_interval="1", sweep_grace="3") as system:
        system.start(workers=1, concurrency=4, beat=True)
        admin = redis.Redis.from_url(system.env["NOTIFYQ_REDIS_URL"])
        with httpx.Client(timeout=30) as client:
            before = [post(system, client, f"1391000{i:04d}").json()["id"] for i in range(10)]
            admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # its master away
            try:
                refused = post(system, client, "13910009999")
                assert refused.status_code == 503 and refused.headers["Retry-After"]
                assert refused.json()["errors"][0]["field"] == "redis"
                beat = next(p for p in system.stack.procs if p.name == "beat")
                wait_until(
                    lambda: "Redis is unavailable" in beat.text(), 30, what="beat to meet it"
                )
            finally:
                admin.execute_command("REPLICAOF", "NO", "ONE")
            wait_until(
                lambda: post(system, client, "13910008888").status_code == 202,
                30,
                what="enqueue accepted again",
            )
            after = [post(system, client, f"1391001{i:04d}").json()["id"] for i in range(10)]
        system.wait_for(before + after, {"delivered"}, timeout=90)
        assert all(p.alive() for p in system.stack.procs), system.stack.report()
