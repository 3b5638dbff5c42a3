"""Campaigns end to end: a 10,000-recipient CSV through real workers and the
sandbox, with back-pressure, pause, resume and cancel — and nothing stray after cancel."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from scheduler.caps import cap_slot
from store.schema import Event
from store.status import Status
from tasks.campaigns.control import cancel, progress
from tasks.campaigns.intake import CHUNK
from tasks.campaigns.release import FANOUT_LOCK, fan_out
from tests.conftest import System
from tests.scheduler.test_caps import unpack
from tests.services import wait_until
from worker.queues import BULK_QUEUE, DISPATCH_QUEUES

pytestmark = pytest.mark.slow

HIGH_WATER = 10
#: the 10,000-row campaign's own rate (calls a second): 27 s at least for the rows left
#: at its cancel
CANCEL_RACE_RATE = 150


def write_csv(path: Path, rows: int, bad: dict[int, list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mobile", "name", "amount"])
        for i in range(rows):
            writer.writerow(bad.get(i) or [f"139{i:08d}", f"客户{i}", f"{100 + i}.00"])


def placed(system: System) -> int:
    return system.placed("ihuyi")


def republished(system: System) -> int:
    """Rows that went deferred or retrying: each can put one message in the queue that
    the campaign's fan-out did not count."""
    with system.runtime.db.read() as conn:
        return conn.execute(
            select(func.count())
            .select_from(Event)
            .where(Event.to_status.in_([Status.DEFERRED, Status.RETRYING]))
        ).scalar_one()


def show(system: System, campaign_id: int) -> dict:
    """What ``notifyq campaign show ID --json`` prints (a `notifyq` process)."""
    shown = system.cli("campaign", "show", str(campaign_id), "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def view(system: System, campaign_id: int) -> dict:
    """The same view from this process, as the JSON the command prints: what polls read
    (a process per poll would take the CPU the workers being watched need)."""
    found = progress(system.runtime, campaign_id)
    assert found is not None, f"no campaign {campaign_id}"
    return json.loads(json.dumps(found, ensure_ascii=False, default=str))


def admitted_at(system: System, national: str) -> float:
    """When this number's one call was admitted: its cap log's stamp (Redis's clock)."""
    raw = system.runtime.redis.hget(*cap_slot("ihuyi", f"+86{national}"))
    assert raw, f"no cap log for {national}"
    (stamp,), _ = unpack(raw)
    return stamp / 1000


def create_campaign(system: System, recipients: Path, content: str, *extra: str) -> Any:
    """``notifyq campaign create`` for ihuyi with this CSV and text (JSON answer)."""
    return system.cli(
        "campaign", "create", "--provider", "ihuyi", "--recipients", str(recipients),
        "--content", content, *extra, "--json",
    )  # fmt: skip


def dispatch_idle(system: System, campaign_id: int) -> bool:
    """No dispatch work left that could place a call for this campaign: no message in the
    dispatch queue, none delivered to a worker and not yet finished (acks are late, so a
    running or retry-scheduled task keeps its message in ``unacked``), no row sending."""
    broker = redis.Redis.from_url(system.env["NOTIFYQ_REDIS_URL"])
    if any(broker.llen(queue) for queue in DISPATCH_QUEUES.values()):
        return False
    if any(b'"notifyq.dispatch"' in raw for raw in broker.hvals("unacked")):
        return False
    return view(system, campaign_id)["counts"].get("sending", 0) == 0


def stopped(system: System, campaign_id: int) -> int:
    """Calls placed, once no dispatch work that could place another is left."""
    wait_until(
        lambda: dispatch_idle(system, campaign_id),
        120,
        interval=0.2,
        what=f"campaign {campaign_id}'s dispatch work to drain",
    )
    return placed(system)


def fan_out_now(system: System) -> dict[str, int]:
    """One campaign fan-out (what beat runs), on the system's clock, under beat's lock:
    a test that moves the clock runs the pass itself rather than wait for beat's turn
    (beat's own pass reads the same clock and may still come first)."""

    rt = system.runtime
    with rt.redis.lock(FANOUT_LOCK, timeout=60, blocking_timeout=60):
        return fan_out(rt, now=system.now())


@pytest.mark.timeout(900)  # two minutes on a quiet machine; far longer under make test-stress
def test_a_10000_recipient_campaign_with_pause_resume_and_cancel(
    make_system, tmp_path: Path
) -> None:
    system: System = make_system(
        release_high_water=str(HIGH_WATER),
        dispatch_batch="50",
        pump_interval="0.5",
        # the sweeper re-drives released rows whose hand-off is older than the grace: on
        # a loaded machine a row can wait that long behind a full queue, and each re-drive
        # is a message the fan-out did not count. Out of its reach here, the fan-out's
        # bound below is exact.
        sweep_grace="600",
    )
    system.start(
        concurrency=16, beat=True, sandbox_args=("--receipt-delay", "0.2", "--latency-ms", "20")
    )
    recipients = tmp_path / "borrowers.csv"
    bad_rows = {
        10: ["12345", "x", "1"],
        20: ["13900000020", "只有两列"],
        30: ["+1 415 555 0100", "y", "2"],
    }
    write_csv(recipients, 10_003, bad_rows)

    # The campaign's own rate bounds how fast it can go, whatever the machine: the 4,000
    # rows left when it is cancelled take at least 4,000 / RATE seconds, so no delay of
    # this process's polls under load lets it finish before the cancel.
    created = create_campaign(
        system,
        recipients,
        "尊敬的{name}，您本期应还{amount}元，请按时还款。",
        "--rate",
        f"{CANCEL_RACE_RATE}/second",
    )
    assert created.returncode == 0, created.stderr
    answer = json.loads(created.stdout)
    assert (answer["accepted"], answer["rejected"]) == (10_000, 3)
    assert {e["row"] for e in answer["errors"]} == {12, 22, 32}, (
        "row numbers count the header as row 1"
    )
    campaign_id = answer["id"]

    broker = redis.Redis.from_url(system.env["NOTIFYQ_REDIS_URL"])
    depths = []
    wait_until(
        lambda: (depths.append(broker.llen(BULK_QUEUE)) or placed(system)) >= 2000,
        300,
        interval=0.1,
        what="2,000 calls",
    )
    # The fan-out tops the queue up to the high water and no further; the only other
    # messages are those of rows that were deferred (the pump releases them) or retried
    # (Celery republishes them): at most one message each.
    others = republished(system)
    assert max(depths) <= HIGH_WATER + others, (
        f"the queue held {max(depths)} messages (high water {HIGH_WATER}, "
        f"{others} deferred or retried rows)"
    )

    assert system.cli("campaign", "pause", str(campaign_id)).returncode == 0
    paused_at = stopped(system, campaign_id)
    assert view(system, campaign_id)["status"] == "paused"
    system.beat_passes("notifyq.campaigns", "notifyq.release_due")
    assert placed(system) == paused_at, "a paused campaign places no call"

    assert system.cli("campaign", "resume", str(campaign_id)).returncode == 0
    wait_until(lambda: placed(system) >= 6000, 300, interval=0.2, what="6,000 calls")
    # cancelled in this process, within one poll of the 6,000th call: a `notifyq` process
    # takes seconds to start on a loaded machine (the command itself is tested on a
    # scheduled campaign, in the start-time test)
    cancel(system.runtime, campaign_id)
    after_cancel = stopped(system, campaign_id)
    system.beat_passes("notifyq.campaigns", "notifyq.release_due")
    assert placed(system) == after_cancel, "nothing stray goes out after cancel"

    def settled() -> dict | None:
        seen = view(system, campaign_id)
        open_rows = sum(
            seen["counts"].get(s, 0) for s in ("queued", "deferred", "retrying", "sending", "sent")
        )
        return seen if open_rows == 0 else None

    settled_view = wait_until(settled, 180, interval=0.5, what="receipts for every placed call")
    shown = show(system, campaign_id)  # the command prints the same
    assert {k: shown[k] for k in ("status", "counts", "total", "rejected")} == {
        k: settled_view[k] for k in ("status", "counts", "total", "rejected")
    }
    counts = shown["counts"]
    assert shown["status"] == "cancelled"
    assert counts.get("delivered", 0) == after_cancel, (
        "every placed call was called once and delivered"
    )
    assert counts.get("cancelled", 0) == 10_000 - after_cancel
    assert shown["total"] == 10_000 and shown["rejected"] == 3
    calls = [c["fields"]["content"] for c in system.ledger("ihuyi") if c["placed"]]
    assert len(calls) == len(set(calls)), "no recipient called twice"


def test_a_campaign_with_a_start_time_waits_for_it_then_runs(make_system, tmp_path: Path) -> None:
    system: System = make_system(pump_interval="0.5", clock_control="true")
    system.start(beat=True, sandbox_args=("--receipt-delay", "0.2"))
    recipients = tmp_path / "list.csv"
    write_csv(recipients, 20, {})
    # An hour ahead, to the second (as --at reads): no start-up or slow CLI reaches it;
    # the test moves the system's clock there instead of waiting.
    start = int(system.now()) + 3600
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)) + "Z"
    created = create_campaign(system, recipients, "您好{name}", "--at", at)
    assert created.returncode == 0, created.stderr
    campaign_id = json.loads(created.stdout)["id"]
    assert view(system, campaign_id)["next_run_at"] == at

    # a second campaign at the same start, cancelled by the command before it starts:
    # its rows end cancelled and none of them is ever called
    other = json.loads(create_campaign(system, recipients, "再见{name}", "--at", at).stdout)["id"]
    cancelled = system.cli("campaign", "cancel", str(other))
    assert cancelled.returncode == 0, cancelled.stderr
    assert "20 notifications cancelled" in cancelled.stdout
    assert view(system, other)["status"] == "cancelled"

    system.beat_passes("notifyq.campaigns", "notifyq.release_due")
    assert placed(system) == 0 and view(system, campaign_id)["status"] == "scheduled"
    # just before the start (the clock runs on meanwhile, far less than a minute)
    system.advance_to(start - 60)
    assert fan_out_now(system)["started"] == 0
    assert placed(system) == 0 and view(system, campaign_id)["status"] == "scheduled"

    system.advance_to(start)
    # started once, by this pass or by beat's (the same pass on the same clock, every
    # 0.5 s: under load it may come first)
    started = fan_out_now(system)["started"]
    assert started == 1 or view(system, campaign_id)["status"] != "scheduled"
    # completed once every row is sent; then the receipts (0.2 s on) — the event to wait
    # on before reading the final counts (the command's own start-up is no such wait)
    seen = wait_until(
        lambda: (
            (v := view(system, campaign_id))["status"] == "completed"
            and "sent" not in v["counts"]
            and v
        ),
        90,
        interval=0.5,
        what="completed, every receipt in",
    )
    started = datetime.fromisoformat(seen["started_at"]).timestamp()
    assert start <= started < start + 60, "started at --at, on the system's clock"
    assert seen["counts"] == {"delivered": 20}
    assert view(system, other)["counts"] == {"cancelled": 20}
    assert placed(system) == 20, "the cancelled campaign's rows were never called"
    assert placed(system) == 20


def test_a_campaigns_own_rate_cap_holds(make_system, tmp_path: Path) -> None:
    system: System = make_system(pump_interval="0.5")
    system.start(beat=True, sandbox_args=("--receipt-delay", "0.2"))
    recipients = tmp_path / "list.csv"
    write_csv(recipients, 60, {})
    created = create_campaign(system, recipients, "您好{name}", "--rate", "10/second")
    assert created.returncode == 0, created.stderr
    campaign_id = json.loads(created.stdout)["id"]
    wait_until(
        lambda: view(system, campaign_id)["status"] == "completed",
        120,
        interval=0.5,
        what="completed",
    )
    numbers = [c["number"] for c in system.ledger("ihuyi") if c["placed"]]
    assert len(numbers) == 60 == len(set(numbers))
    # GCRA's promise for 10/second: a burst of at most 10, then one call per 0.1 s — so any
    # span of L seconds holds at most 10 + L / 0.1 admissions. The promise is kept at
    # admission, on Redis's clock, so that is where it is checked: each recipient's cap
    # log holds the moment its per-number caps passed, in the same admission pass right
    # after the rate was taken (arrival times at the sandbox add an HTTP trip through a
    # busy machine, which no slack bounds). The slack allowed between taking the rate and
    # stamping the caps is the margin notifyq itself allows for such jitter
    # (``cap_margin``); no limiter at all would be 35+ calls over even so.
    jitter = system.settings.cap_margin
    times = sorted(admitted_at(system, number) for number in numbers)
    worst = max(
        (j - i + 1) - (10 + (times[j] - times[i] + jitter) / 0.1)
        for i in range(len(times))
        for j in range(i, len(times))
    )
    assert worst <= 0, f"{worst:.1f} calls over the cap's allowance"
    assert times[-1] - times[0] >= (60 - 10) * 0.1 - jitter, "60 calls at 10/second take 5 s"


def test_a_csv_that_breaks_half_way_leaves_a_cancelled_campaign_and_sends_nothing(
    make_system, tmp_path: Path
) -> None:

    system: System = make_system(pump_interval="0.5")
    with system.stack.together():
        system.sandbox()
        system.stack.worker("--concurrency", "4")
        system.stack.beat()
    recipients = tmp_path / "list.csv"
    # a chunk is stored before the break (which shows where the decoder reads ahead to it)
    write_csv(recipients, CHUNK + 1000, {})
    with recipients.open("ab") as handle:
        handle.write(b"13900000001,\xff\xfe broken,1.00\n")
    created = create_campaign(system, recipients, "您好{name}")
    assert created.returncode == 2, created.stdout + created.stderr
    assert created.stderr.startswith("error: recipients:") and "cancelled" in created.stderr
    campaign_id = int(created.stderr.split("campaign ")[1].split()[0])
    seen = view(system, campaign_id)
    assert seen["status"] == "cancelled"
    assert set(seen["counts"]) == {"cancelled"} and seen["counts"]["cancelled"] >= CHUNK
    # fan-out, pump and sweep passes after the failed import: nothing reaches a provider
    system.beat_passes("notifyq.campaigns", "notifyq.release_due", "notifyq.sweep")
    assert placed(system) == 0
