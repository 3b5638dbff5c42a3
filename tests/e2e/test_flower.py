"""``notifyq flower`` serves the dashboard for worker.app:celery: tasks appear under
readable names, with ids — never numbers or texts — as their arguments, a retried task
shows its retries, and beat's control tasks stay out of its history."""

from __future__ import annotations

import httpx
import pytest

from tasks.enqueue import enqueue
from tests.conftest import System
from tests.services import free_port, wait_until

pytestmark = pytest.mark.slow


def test_flower_shows_dispatch_tasks_with_ids_only_and_their_retries(make_system) -> None:
    system: System = make_system(retry_base="0.3", retry_max="1")
    port = free_port()
    with system.stack.together():
        system.start(workers=1, concurrency=4, beat=True)
        # the API unauthenticated: the test's own Flower, on loopback
        system.stack.flower(port, extra_env={"FLOWER_UNAUTHENTICATED_API": "true"})
    system.sandbox_config(fail_first={"ihuyi": 1})
    sent = enqueue("ihuyi", "13800138000", content="您的订单已发货。", runtime=system.runtime)
    system.wait_for([sent.id], {"delivered"}, timeout=30)

    def tasks() -> dict:
        return httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=10).json()

    seen = wait_until(
        lambda: [t for t in tasks().values() if t.get("name") == "notifyq.dispatch"],
        30,
        what="tasks in Flower",
    )
    assert all(t["args"] in (f"[[{sent.id}]]", f"([{sent.id}],)") for t in seen), [
        t["args"] for t in seen
    ]
    page = httpx.get(f"http://127.0.0.1:{port}/tasks", timeout=10)
    assert page.status_code == 200
    states = {t["state"] for t in seen}
    assert "SUCCESS" in states
    # Flower keeps a task's latest state: the task that failed once went RETRY, ran again
    # and ended SUCCESS, and carries its count of retries
    assert any(t.get("retries", 0) >= 1 for t in tasks().values()), "the failed attempt was retried"
    assert "13800138000" not in httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=10).text
    # beat's control tasks ran meanwhile (and run on), but none of them fills the history
    system.wait_runs("notifyq.release_due", 2)
    system.wait_runs("notifyq.campaigns", 2)
    names = {t.get("name") for t in tasks().values()}
    assert names == {"notifyq.dispatch"}, names
