"""``notifyq healthcheck`` (what compose's healthchecks run) says healthy for a running
api, worker and beat, and unhealthy, with the reason, when the process is gone."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from tests.conftest import System
from tests.services import run_notifyq

pytestmark = pytest.mark.slow


def check(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    # in the system's folder: beat's var/ is relative to where it runs
    return run_notifyq("healthcheck", *args, env={**os.environ, **system.env}, cwd=system.directory)


def test_healthchecks_follow_the_processes(make_system: Any) -> None:
    system: System = make_system()
    system.start(workers=1, concurrency=2, beat=True)
    ready = f"{system.api_url}/readyz"  # what compose asks
    for args in (("api", "--url", ready), ("worker",), ("beat",)):
        answer = check(system, *args)
        assert answer.returncode == 0, (args, answer.stderr)
    system.stack.stop(grace=30)
    assert check(system, "api", "--url", ready).returncode == 1
    gone = check(system, "worker")
    assert gone.returncode == 1 and "answered a ping" in gone.stderr, gone.stderr
    stale = check(system, "beat", "--max-age", "0")
    assert stale.returncode == 1 and "not rewritten" in stale.stderr, stale.stderr
