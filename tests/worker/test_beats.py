"""Any number of beats, from one folder, send each periodic job once a period and none of
them dies: nothing of the schedule lives in a file they share (worker/beat_scheduler.py),
and each period is claimed in Redis on Redis's clock (scheduler/periods.py).

The bound each test checks is the claim's own: between two sends of a job at least
``LEAST_GAP`` of its period passes on Redis's clock, so a window of ``D`` seconds holds
at most ``D / (LEAST_GAP * period) + 1`` sends, whatever the beats' number — where
``k`` beats without the claim would send about ``k * D / period``."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from scheduler.periods import LEAST_GAP
from tests.conftest import System, embedded_settings, runs_since
from tests.services import wait_until
from worker.app import make_celery
from worker.beat_scheduler import HEARTBEAT, ClaimingScheduler
from worker.queues import CONTROL_QUEUE

PERIOD = 0.03
WINDOW = 0.1
JOBS = ("release-due", "poll-reports")
TASKS = tuple(f"notifyq.{name.replace('-', '_')}" for name in JOBS)


def redis_seconds(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def sent(client: redis.Redis) -> Counter[str]:
    """The jobs waiting in the control queue (no worker takes them here), by task."""
    return Counter(
        json.loads(raw)["headers"]["task"] for raw in client.lrange(CONTROL_QUEUE, 0, -1)
    )


def most_sends(window: float, period: float) -> int:
    return math.floor(window / (LEAST_GAP * period)) + 1


def run_beat(
    app: Any,
    settings: Any,
    start: threading.Barrier,
    stop: threading.Event,
    failures: list[BaseException],
) -> None:
    """One beat in a thread, as ``celery beat`` runs it: tick, sleep as told, tick. The
    beats start ticking together, once each is built."""
    try:
        scheduler = ClaimingScheduler(app=app, settings=settings)
        start.wait()
        try:
            while not stop.is_set():
                time.sleep(min(max(scheduler.tick(), 0.0), 0.005))
        finally:
            scheduler.close()
    except BaseException as error:
        failures.append(error)


@pytest.mark.parametrize("beats", [2, 3])
def test_beats_started_together_from_one_folder_send_each_job_once_a_period_for_20_rounds(
    beats: int,
    sqlite_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # one folder for all: var/ is relative to where beats run
    settings = embedded_settings(sqlite_url, redis_url)
    app = make_celery(settings)
    app.conf.beat_schedule = {
        name: {
            "task": task,
            "schedule": timedelta(seconds=PERIOD),
            "options": {"queue": CONTROL_QUEUE},
        }
        for name, task in zip(JOBS, TASKS, strict=True)
    }
    client = redis.Redis.from_url(redis_url)
    for _ in range(20):
        client.flushdb()
        failures: list[BaseException] = []
        stop = threading.Event()
        start = threading.Barrier(beats + 1)

        threads = [
            threading.Thread(target=run_beat, args=(app, settings, start, stop, failures))
            for _ in range(beats)
        ]
        for thread in threads:
            thread.start()
        start.wait()
        began = redis_seconds(client)
        time.sleep(WINDOW)
        # however busy the machine: each job has been sent (and the window includes it)
        wait_until(lambda: min(sent(client)[t] for t in TASKS) >= 2, 30, what="two sends each")
        stop.set()
        for thread in threads:
            thread.join(30)
        window = redis_seconds(client) - began

        assert not failures, failures
        counts = sent(client)
        for task in TASKS:
            assert counts[task] <= most_sends(window, PERIOD), (task, counts, window)
    assert (tmp_path / HEARTBEAT).exists(), "each turn touches the heartbeat"


@pytest.mark.slow
def test_three_beat_processes_from_one_folder_all_live_and_send_once_a_period(
    make_system: Any,
) -> None:
    system: System = make_system(pump_interval="1", apispace_report_interval="1")
    with system.stack.together():
        system.sandbox()
        system.stack.worker("--concurrency", "4")
        beats = [system.stack.beat() for _ in range(3)]
    mark = system.log_mark()
    began = time.monotonic()
    system.wait_runs("notifyq.release_due", runs=5, timeout=60, mark=mark)
    system.wait_runs("notifyq.poll_reports", runs=3, timeout=60, mark=mark)
    # every run counted began after the mark, and counted runs have finished by now
    window = time.monotonic() - began
    for task in ("notifyq.release_due", "notifyq.poll_reports"):
        runs = runs_since(system.stack, mark, task)
        assert runs <= most_sends(window, 1.0) + 1, (task, runs, window)
    assert all(beat.alive() for beat in beats), system.stack.report()
    assert "Traceback" not in system.stack.logs(), system.stack.report()
