"""``notifyq flower`` is behind a login or on loopback: without NOTIFYQ_FLOWER_BASIC_AUTH
(or Flower's OAuth settings) it refuses any other address; with it, every page but the
healthcheck asks for the password."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.services import Stack, free_port, run_notifyq

LOGIN = ("operator", "flower-pass-81c2")


def test_without_a_login_flower_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env.pop("NOTIFYQ_FLOWER_BASIC_AUTH", None)
    answer = run_notifyq("flower", "--port=1", "--address=0.0.0.0", env=env, cwd=tmp_path)
    assert answer.returncode == 2, answer
    assert "NOTIFYQ_FLOWER_BASIC_AUTH" in answer.stderr


def test_with_a_login_every_page_asks_for_it(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    stack = Stack(
        tmp_path,
        {"NOTIFYQ_REDIS_URL": redis_url, "NOTIFYQ_FLOWER_BASIC_AUTH": ":".join(LOGIN)},
    )
    try:
        flower = stack.flower(port)
        base = f"http://127.0.0.1:{port}"
        for path in ("/", "/tasks", "/api/workers"):
            assert httpx.get(base + path, timeout=10).status_code == 401, path
            assert httpx.get(base + path, auth=LOGIN, timeout=10).status_code == 200, path
            assert httpx.get(base + path, auth=("operator", "nope"), timeout=10).status_code == 401
        assert LOGIN[1] not in flower.text()  # the password is never logged
    finally:
        stack.stop(grace=5)
