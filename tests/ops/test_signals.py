"""harness/signals.py: SIGTERM takes Ctrl-C's path (``finally`` runs), and a child started
with ``die_with_parent`` does not outlive the process that started it, even a SIGKILLed
one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.services import wait_until

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def test_sigterm_runs_the_cleanup_ctrl_c_runs(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    ready = tmp_path / "ready"
    program = f"""
import pathlib, time
from harness.signals import sigterm_as_interrupt
try:
    with sigterm_as_interrupt():
        pathlib.Path({str(ready)!r}).touch()
        while True:
            time.sleep(0.05)
except KeyboardInterrupt:
    pass
finally:
    pathlib.Path({str(marker)!r}).touch()
"""
    process = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT)
    wait_until(ready.exists, 30, what="the program to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert marker.exists()


def test_an_interrupt_that_surfaces_as_another_error_is_still_known(tmp_path: Path) -> None:
    """The KeyboardInterrupt lands inside a clean-up that raises its own error (as
    SQLAlchemy's does after rolling back an interrupted commit): the block still knows
    SIGTERM arrived, and the demo exits 130 on it, not 1."""
    ready = tmp_path / "ready"
    program = f"""
import pathlib, sys, time
from harness.signals import sigterm_as_interrupt
with sigterm_as_interrupt() as interrupt:
    try:
        try:
            pathlib.Path({str(ready)!r}).touch()
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            raise AssertionError("a library's own check, failing during its clean-up")
    except AssertionError:
        sys.exit(130 if interrupt.received else 1)
"""
    process = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT)
    wait_until(ready.exists, 30, what="the program to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 130


def test_a_child_dies_with_its_parent_even_a_killed_one(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    program = f"""
import pathlib, subprocess, sys, time
from harness.signals import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         preexec_fn=die_with_parent)
pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))
time.sleep(120)
"""
    parent = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT)
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, what="the child")
        child = int(pid_file.read_text())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        wait_until(lambda: not alive(child), 30, what="the child to die with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
