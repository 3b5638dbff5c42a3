"""Outcome → action (docs/codes.md) against the sandbox, with real workers and beat:
transient → retried with backoff (Celery RETRY) then sent or failed; permanent →
failed; the provider's cap → deferred and our cap state learns; account → the circuit
opens for everyone and a probe closes it; ambiguous → unknown, never called twice.
Plus idempotency keys, redelivered tasks and the sweeper."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from store import Change, Expect, NewNotification, Status
from tasks.dispatch import dispatch_ids
from tasks.enqueue import enqueue
from tests.conftest import System, system_per_backend
from tests.services import wait_until

pytestmark = pytest.mark.slow


system = system_per_backend(
    "outcomes",
    15,
    retry_base="0.5",
    retry_max="2",
    max_attempts="3",
    http_read_timeout="1",
    circuit_cooldown="2",
    sweep_grace="3",
    sending_timeout="4",
    sweep_interval="1",
)


@pytest.fixture(autouse=True)
def clean_sandbox(system: System) -> Iterator[None]:
    yield
    system.sandbox_config(refusals={}, fail_rate=0, timeout_rate=0, latency_ms=0)


def send(system: System, number: str, text: str = "您的快递已到。", **kwargs) -> int:  # type: ignore[no-untyped-def]
    return enqueue("ihuyi", number, content=text, runtime=system.runtime, **kwargs).id


def calls_to(system: System, number: str) -> list[dict]:
    return [c for c in system.ledger("ihuyi") if c["number"] == number]


def row(system: System, notification_id: int):  # type: ignore[no-untyped-def]
    return system.runtime.notifications.get(notification_id)


def test_a_transient_failure_is_retried_with_backoff_then_sent(system: System) -> None:
    system.sandbox_config(refusals={"0101": "0"})
    nid = send(system, "13800000101")
    wait_until(lambda: row(system, nid).attempts >= 2, 20, what="two attempts")
    assert row(system, nid).status in (Status.RETRYING, Status.SENDING)
    system.sandbox_config(refusals={})
    system.wait_for([nid], {"delivered"}, timeout=30)
    statuses = [e.to_status for e in system.runtime.notifications.events(nid)]
    assert statuses.count(Status.RETRYING) >= 2
    assert "retry: Retry in" in system.stack.logs(), (
        "the retry is a Celery retry (Flower shows RETRY)"
    )
    times = [
        e.at for e in system.runtime.notifications.events(nid) if e.to_status == Status.SENDING
    ]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(gap >= 0.2 for gap in gaps), f"backoff between attempts: {gaps}"


def test_a_transient_failure_that_persists_fails_after_max_attempts(system: System) -> None:
    system.sandbox_config(refusals={"0102": "0"})
    nid = send(system, "13800000102")
    system.wait_for([nid], {"failed"}, timeout=40)
    final = row(system, nid)
    assert final.attempts == 3
    assert "gave up after 3 attempts" in final.reason
    assert len(calls_to(system, "13800000102")) == 3


def test_a_permanent_refusal_fails_at_once(system: System) -> None:
    system.sandbox_config(refusals={"0103": "4030"})
    nid = send(system, "13800000103")
    system.wait_for([nid], {"failed"}, timeout=20)
    final = row(system, nid)
    assert (final.attempts, final.provider_code) == (1, "4030")
    assert "4030" in final.reason


def test_the_providers_cap_refusal_defers_and_our_cap_state_learns_it(system: System) -> None:
    system.sandbox_config(refusals={"0104": "4081"})
    before = system.now()
    first = send(system, "13800000104")
    system.wait_for([first], {"deferred"}, timeout=30)
    after = system.now()
    deferred = row(system, first)
    assert deferred.reason == "cap:ihuyi:provider-4081"
    # blocked for ihuyi's minute from the answer, which came between the two readings
    assert before + 60 <= deferred.next_attempt_at <= after + 60
    second = send(system, "13800000104", "第二条")
    system.wait_for([second], {"deferred"}, timeout=20)
    assert row(system, second).reason == "cap:ihuyi:provider-block"
    assert len(calls_to(system, "13800000104")) == 1, "no call while the provider blocks the number"


def test_an_account_error_opens_the_circuit_for_everyone_and_a_probe_closes_it(
    system: System,
) -> None:
    system.sandbox_config(refusals={"*": "4051"})
    first = send(system, "13800000105")
    system.wait_for([first], {"deferred"}, timeout=20)
    assert row(system, first).reason == "circuit:ihuyi"
    # the circuit opens right after the answer is committed (nothing may come between an
    # answer and its commit): the promise is about what is admitted once it is open
    wait_until(lambda: system.runtime.circuit.is_open("ihuyi"), 20, what="the circuit to open")
    others = [send(system, f"1380000020{i}") for i in range(3)]
    system.wait_for(others, {"deferred"}, timeout=20)
    assert all(row(system, i).reason == "circuit:ihuyi" for i in others)
    assert not any(calls_to(system, f"1380000020{i}") for i in range(3)), (
        "no call while the circuit is open"
    )
    assert "circuit OPEN for ihuyi" in system.stack.logs()
    system.sandbox_config(refusals={})
    system.wait_for([first, *others], {"delivered"}, timeout=40)
    assert "circuit closed for ihuyi" in system.stack.logs()


def test_a_timeout_after_sending_is_unknown_and_never_resent(system: System) -> None:
    system.sandbox_config(timeout_rate=1.0)
    nid = send(system, "13800000106")
    system.wait_for([nid], {"unknown"}, timeout=30)
    system.sandbox_config(timeout_rate=0)
    system.beat_passes(
        "notifyq.sweep", "notifyq.release_due"
    )  # sweeps and pump passes later, still one call
    placed = [c for c in calls_to(system, "13800000106") if c["placed"]]
    assert len(placed) == 1
    assert row(system, nid).status == Status.UNKNOWN


def test_the_same_idempotency_key_sends_once(system: System) -> None:
    one = system.cli(
        "send", "ihuyi", "--to", "13800000107", "--content", "一次", "--key", "order-107"
    )
    two = system.cli(
        "send", "ihuyi", "--to", "13800000107", "--content", "一次", "--key", "order-107"
    )
    assert one.returncode == two.returncode == 0
    assert one.stdout == two.stdout
    system.wait_for([int(one.stdout)], {"delivered"}, timeout=30)
    system.beat_passes("notifyq.sweep", "notifyq.release_due")
    assert len(calls_to(system, "13800000107")) == 1


def test_a_redelivered_task_for_a_finished_row_does_nothing(system: System) -> None:
    nid = send(system, "13800000108")
    system.wait_for([nid], {"delivered"}, timeout=20)
    report = dispatch_ids(system.runtime, [nid])
    assert (report.sent, report.skipped) == (0, 1)
    assert len(calls_to(system, "13800000108")) == 1


def test_the_sweeper_redrives_a_notification_whose_message_was_lost(system: System) -> None:
    (stored,) = system.runtime.notifications.insert(
        [NewNotification(provider="ihuyi", to="+8613800000109", content="丢失的消息")]
    )  # stored, never published: a lost broker message
    system.wait_for([stored.id], {"delivered"}, timeout=30)
    assert "re-driving" in system.stack.logs()


def test_the_sweeper_marks_a_row_left_sending_by_a_lost_worker_unknown(system: System) -> None:
    (stored,) = system.runtime.notifications.insert(
        [NewNotification(provider="ihuyi", to="+8613800000110", content="x")]
    )
    system.runtime.notifications.transition(
        [
            Change(
                stored.id,
                Status.SENDING,
                expect=Expect.row(system.runtime.notifications.get(stored.id)),
            )
        ],
        now=time.time() - 60,
    )
    system.wait_for([stored.id], {"unknown"}, timeout=20)
    assert "worker lost mid-call" in row(system, stored.id).reason
    assert calls_to(system, "13800000110") == []
