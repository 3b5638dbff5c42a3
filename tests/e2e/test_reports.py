"""APISpace's pull-and-delete report, polled on beat: every notification reaches its final
status through the poll, the provider's store ends empty, and two beats never pull at
the same time (the poll holds a Redis lock for its whole run)."""

from __future__ import annotations

import httpx
import pytest

from tasks.enqueue import enqueue_many
from tasks.requests import SendRequest
from tests.conftest import System

pytestmark = pytest.mark.slow

LATENCY = 0.1


def test_fifty_voice_notifications_end_final_through_the_beat_poll_even_with_two_beats(
    make_system,
) -> None:
    system: System = make_system(apispace_report_interval="1", apispace_report_page="10")
    with system.stack.together():
        system.sandbox(
            "--receipt-delay",
            "0.5",
            "--latency-ms",
            str(int(LATENCY * 1000)),
            "--outcome",
            "7=no-answer",
        )
        system.stack.worker("--concurrency", "8")
        system.stack.beat()
        system.stack.beat()

    numbers = [f"1371234{i:04d}" for i in range(50)]
    results = enqueue_many(
        [
            SendRequest(provider="apispace-voice", to=n, template="1011340330", params=("张三",))
            for n in numbers
        ],
        runtime=system.runtime,
    )
    ids = [r.id for r in results]
    system.wait_for(ids, {"delivered", "undelivered"}, timeout=90)

    undelivered = {
        n for n, i in zip(numbers, ids, strict=True) if system.status(i) == "undelivered"
    }
    assert undelivered == {n for n in numbers if n.endswith("7")}
    waiting = httpx.get(f"{system.sandbox_url}/_sandbox/reports", timeout=10).json()["waiting"]
    assert waiting == 0, "every report was pulled (and so deleted) from the provider"

    pulls = sorted(c["at"] for c in system.ledger("apispace-voice") if c["api"] == "report")
    assert len(pulls) >= 5, "a page of 10 comes back full: the poll keeps pulling"
    gaps = [b - a for a, b in zip(pulls, pulls[1:], strict=False)]
    assert min(gaps) >= LATENCY * 0.9, f"two pulls overlapped: gaps {sorted(gaps)[:3]}"
    assert system.runtime.receipts.pending() == 0
