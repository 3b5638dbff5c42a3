"""A ready worker hands the GIL over within :data:`worker.lanes.SWITCH_INTERVAL`, not
CPython's 5 ms, so a code's thread gets it back promptly from a busy call loop."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from worker import lanes


@pytest.fixture
def restored_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("restored_interval")
def test_a_ready_worker_shortens_the_switch_interval() -> None:
    sys.setswitchinterval(0.005)
    lanes._prompt_turns()
    assert sys.getswitchinterval() == pytest.approx(lanes.SWITCH_INTERVAL)
    assert lanes.SWITCH_INTERVAL < 0.005
