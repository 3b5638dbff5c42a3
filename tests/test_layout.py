"""The house rules of the layout: nothing reads the environment at import, and the
imports flow one way (the import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "api", "cli", "worker", "tasks", "store", "config", "observe",
    "scheduler", "providers", "sandbox", "harness", "webhooks",
)  # fmt: skip

IMPORT_ALL = """
import importlib, pkgutil, sys
packages = sys.argv[1:]
for name in packages:
    package = importlib.import_module(name)
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if ".migrations" in info.name:  # Alembic's env.py runs only under Alembic
            continue
        importlib.import_module(info.name)
from worker.app import celery
assert not celery.configured, "the Celery app was configured at import"
print("imported")
"""


def test_every_module_imports_with_settings_that_would_not_validate() -> None:
    """A bad NOTIFYQ_* value fails when a process starts (get_settings()), never at
    import: so a test, a tool or Celery's CLI can import any module whatever the env."""
    env = {
        **os.environ,
        "NOTIFYQ_WORKER_CONCURRENCY": "not-a-number",
        "NOTIFYQ_TIMEZONE": "Nowhere/Nothing",
        "NOTIFYQ_REDIS_URL": "redis://127.0.0.1:1/0",
    }
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *PACKAGES],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "imported"


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
