"""Enqueue→call waits by priority class (tasks/latency.py), on a real Redis: each call
observed in the histogram with its class and provider, and each class's current p99
computed from the samples of the last five minutes, whichever process recorded them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from scheduler.priority import Priority
from tasks import latency
from tasks.runtime import Runtime
from tests.conftest import embedded_settings


@dataclass(frozen=True)
class Row:
    """What a dispatch hands over of a row being called."""

    provider: str
    priority: str
    created_at: float


@pytest.fixture
def runtime(sqlite_url: str, redis_url: str) -> Iterator[Runtime]:
    rt = Runtime.build(embedded_settings(sqlite_url, redis_url))
    yield rt
    rt.close()


def observed(priority: str, provider: str) -> float:
    value = REGISTRY.get_sample_value(
        "notifyq_enqueue_to_call_seconds_count", {"priority": priority, "provider": provider}
    )
    return value or 0.0


def test_each_class_has_its_own_p99_of_the_last_five_minutes(runtime: Runtime) -> None:
    before = observed("urgent", "apispace-sms")
    at = 10_000.0
    # long ago: a bulk row that waited an hour (no longer current)
    latency.record(runtime, [Row("ihuyi", "bulk", at - 4000)], at - 600)
    # now: 100 codes that waited 0.1 .. 10.0 s, and two singles
    latency.record(
        runtime, [Row("apispace-sms", "urgent", at - (i + 1) / 10) for i in range(100)], at
    )
    latency.record(
        runtime, [Row("ihuyi", "normal", at - 0.2), Row("ihuyi", "normal", at - 0.4)], at
    )

    lanes = {c.priority: c for c in latency.current(runtime, at + 1)}
    assert list(lanes) == ["urgent", "normal", "bulk"]
    assert (lanes["urgent"].samples, lanes["urgent"].p99) == (100, pytest.approx(9.9))
    assert (lanes["normal"].samples, lanes["normal"].p99) == (2, pytest.approx(0.4))
    assert (lanes["bulk"].samples, lanes["bulk"].p99) == (0, None)
    assert observed("urgent", "apispace-sms") - before == 100


def test_only_the_latest_samples_are_kept(runtime: Runtime) -> None:
    rows = [Row("ihuyi", "normal", 0.0)] * (latency.SAMPLES + 50)
    latency.record(runtime, rows, 1.0)
    assert runtime.redis.llen(latency.samples_key(Priority.NORMAL)) == latency.SAMPLES
