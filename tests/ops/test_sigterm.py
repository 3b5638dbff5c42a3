"""SIGTERM, as ``docker stop``, a service manager or ``timeout`` sends it.

A worker stopped in the middle of a 5 s provider call finishes that call and records
its answer, hands back what it had not begun, and exits: nothing is lost (every
notification is delivered once a worker runs again) and nothing is called twice.
``notifyq demo`` stopped with SIGTERM stops every process it started, as on Ctrl-C; and
``demo --keep`` keeps its word about Flower."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tasks.enqueue import enqueue
from tests.conftest import System
from tests.services import NOTIFYQ, processes_under, wait_until

pytestmark = pytest.mark.slow


def test_a_worker_stopped_mid_call_finishes_it_and_hands_back_the_rest(make_system: Any) -> None:
    # a call leaves within the cap margin of its admission or goes back to waiting: 5 s
    # here, so on a busy machine too, a row seen ``sending`` is a call that leaves
    system: System = make_system(dispatch_batch="1", cap_margin="5")
    system.start(workers=0, api=False)
    worker = system.stack.worker("--concurrency", "1")
    system.sandbox_config(latency_ms=5000)
    rt = system.runtime
    numbers = ["13800138011", "13800138012", "13800138013"]
    ids = [enqueue("ihuyi", n, content="您的快递已到。", runtime=rt).id for n in numbers]
    in_flight = wait_until(
        lambda: [i for i in ids if system.status(i) == "sending"], 30, what="a call in flight"
    )
    os.kill(worker.process.pid, signal.SIGTERM)  # the worker's own pid, as docker stop does
    assert worker.process.wait(60) == 0, worker.text()[-3000:]
    # the call it was making was answered and recorded before it exited
    assert {system.status(i) for i in in_flight} <= {"sent", "delivered"}, worker.text()[-3000:]
    # the rest waits, unharmed, for the next worker
    system.sandbox_config(latency_ms=0)
    system.stack.worker("--concurrency", "4")
    system.wait_for(ids, {"sent", "delivered"}, timeout=60)  # no API here: no receipts
    for number in numbers:
        calls = [c for c in system.ledger("ihuyi") if c["number"].endswith(number)]
        assert len([c for c in calls if c["placed"]]) == 1, (number, calls)


def start_demo(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYQ_")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [NOTIFYQ, "demo", *args],
        cwd=tmp_path,
        env=env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, out


def stop_and_check(
    tmp_path: Path, process: subprocess.Popen[bytes], out: Path, status: int = 130
) -> None:
    """SIGTERM the demo; it exits with ``status`` (130: interrupted; 0: ``--keep``, whose
    way to end is exactly this) and leaves nothing it started running."""
    started = {p: c for p, c in processes_under(tmp_path).items() if p != process.pid}
    names = " ".join(started.values())
    for part in ("redis-server", "sandbox", "api", "worker", "beat"):
        assert part in names, f"{part} not running before SIGTERM: {started}"
    process.send_signal(signal.SIGTERM)
    assert process.wait(90) == status, out.read_text()[-3000:]
    left = {p: c for p, c in processes_under(tmp_path).items() if p in started}
    assert left == {}, f"left running after SIGTERM: {left}"


def test_the_demo_stops_everything_it_started_on_sigterm(tmp_path: Path) -> None:
    process, out = start_demo(tmp_path)
    try:
        wait_until(lambda: "logs in" in out.read_text(), 120, what="the demo's processes")
        stop_and_check(tmp_path, process, out)
    finally:
        if process.poll() is None:
            process.kill()


def test_demo_keep_starts_flower_and_sigterm_stops_it_all(tmp_path: Path) -> None:
    process, out = start_demo(tmp_path, "--keep")
    try:
        wait_until(
            lambda: "Everything keeps running" in out.read_text() or process.poll() is not None,
            240,
            what="the demo's summary",
        )
        text = out.read_text()
        match = re.search(r"Flower \(tasks, retries, workers\): (http://127\.0\.0\.1:\d+)", text)
        assert match, text[-3000:]
        assert httpx.get(f"{match[1]}/healthcheck", timeout=10).text == "OK"
        assert "flower" in " ".join(processes_under(tmp_path).values())
        stop_and_check(tmp_path, process, out, status=0)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{match[1]}/healthcheck", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
