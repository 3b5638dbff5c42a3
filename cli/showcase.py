"""``notifyq demo``: the whole system on this machine, a reminder campaign through all five
providers in the sandbox, live progress, a summary — then everything it started stops.

What it shows, on purpose:

- caps: three reminders to one ihuyi number — the 2nd and 3rd wait for ihuyi's
  1/second cap (``deferred``), then go;
- a calling window: jumdata's window is set to open 15 s after the start, so its
  reminders wait for it (``deferred``, ``window:jumdata``), then go;
- a faulting provider: the sandbox answers itniotech's first two requests, then 30% of
  the rest, with HTTP 500; they are retried with backoff (``retrying``, a Celery RETRY)
  until they pass;
- receipts by every route: ihuyi's push, jumdata's callback, APISpace's pulled report,
  APISpace SMS's and itniotech's pushes; some numbers are seeded to go unanswered.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy import select

from config.settings import Settings
from harness.signals import Interrupt, sigterm_as_interrupt
from harness.supervise import RedisServer, Stack, free_port, redis_answers
from harness.wiring import sandboxed
from store.schema import Event, Notification
from tasks.campaigns.control import progress
from tasks.campaigns.intake import CampaignSpec, import_campaign
from tasks.runtime import Runtime

DEMO_DIR = Path("var") / "demo"
DEMO_DATABASE = Path("var") / "notifyq.db"
WINDOW_OPENS_IN = 15
DEADLINE = 55.0
OPEN = ("queued", "deferred", "retrying", "sending", "sent")


@dataclass(frozen=True)
class DemoCampaign:
    provider: str
    template: str | None
    content: str | None
    header: list[str]
    rows: list[list[str]]
    options: dict[str, str]
    note: str


def campaigns() -> list[DemoCampaign]:
    names = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周婷", "吴昊"]
    ihuyi = [["13800138000", names[0], "1200.00"]] * 3 + [
        [f"1390013{i:04d}", names[i % 10], f"{300 + 37 * i}.00"] for i in range(9)
    ]
    return [
        DemoCampaign(
            "ihuyi",
            None,
            "尊敬的{name}，您本期账单{amount}元将于明日到期，请按时还款。",
            ["mobile", "name", "amount"],
            ihuyi,
            {},
            "one number three times: its 1/second cap",
        ),
        DemoCampaign(
            "jumdata",
            "1001",
            None,
            ["mobile", "name", "amount"],
            [[f"1370013{i:04d}", names[i], f"{500 + 11 * i}.00"] for i in range(8)],
            {"playTimes": "2"},
            f"calling window opens {WINDOW_OPENS_IN}s after the start",
        ),
        DemoCampaign(
            "apispace-voice",
            "1011340330",
            None,
            ["mobile", "name", "amount"],
            [[f"1360013{i:04d}", names[i], f"{800 + 5 * i}.00"] for i in range(10)],
            {},
            "receipts pulled from the report endpoint",
        ),
        DemoCampaign(
            "apispace-sms",
            None,
            "【Eolink】您的还款验证码是{$var}，5分钟内有效。",
            ["mobile", "code"],
            [[f"1350013{i:04d}", f"{4821 + 7 * i}"] for i in range(10)],
            {},
            "one request carries many numbers",
        ),
        DemoCampaign(
            "itniotech",
            "repayment-reminder.mp3",
            None,
            ["mobile"],
            [[f"919856321{i:03d}"] for i in range(10)],
            {"loopCount": "2"},
            "40% of its requests fail: retried",
        ),
    ]


def window_opening_soon(zone: ZoneInfo, seconds: int) -> str:
    """A window closed now that opens ``seconds`` from now (and closes a minute before)."""
    opening = datetime.now(UTC).astimezone(zone) + timedelta(seconds=seconds)
    closing = opening - timedelta(minutes=1)
    return f"{opening:%H:%M:%S}-{closing:%H:%M:%S}"


class Demo:
    def __init__(self, console: Console, *, keep: bool = False) -> None:
        self.console = console
        self.keep = keep
        self.directory = DEMO_DIR.resolve()
        self.redis_server: RedisServer | None = None
        self.stack: Stack | None = None
        self.interrupt = Interrupt()

    def run(self) -> int:
        """Everything it starts stops when it ends, on Ctrl-C and on SIGTERM alike (a
        service manager or ``timeout`` stops it with SIGTERM)."""

        with sigterm_as_interrupt() as interrupt:
            self.interrupt = interrupt
            try:
                return self._run()
            except KeyboardInterrupt:
                pass
            except Exception:
                if not interrupt.received:
                    raise
                # SIGTERM cut into a library's work and surfaced as its error (e.g.
                # SQLAlchemy's check after the rollback of an interrupted commit)
        self.console.print("stopped: everything the demo started has stopped")
        return 130

    def _run(self) -> int:
        with self._services() as env:
            runtime = Runtime.build(
                Settings(
                    _env_file=None,
                    **{
                        k.removeprefix("NOTIFYQ_").lower(): v
                        for k, v in env.items()
                        if k.startswith("NOTIFYQ_")
                    },
                )
            )
            try:
                ids = self._create(runtime)
                finished = self._watch(runtime, ids)
                self._summary(runtime, ids)
            finally:
                runtime.close()
            self._next_steps(env)
            if self.keep:
                flower = self._flower()
                self.console.print(
                    f"Flower (tasks, retries, workers): {flower} (loopback only)\n"
                    "[bold]Everything keeps running; Ctrl-C (or SIGTERM) stops it all.[/]"
                )
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        self.interrupt.check()
                        time.sleep(1)
        return 0 if finished else 1

    def _flower(self) -> str:
        """Flower on a free loopback port, as ``--keep`` promises (no login: loopback)."""
        assert self.stack is not None
        port = free_port()
        self.stack.flower(port)
        return f"http://127.0.0.1:{port}"

    @contextlib.contextmanager
    def _services(self) -> Iterator[dict[str, str]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        given = os.environ.get("NOTIFYQ_REDIS_URL")
        if given and redis_answers(given):
            redis_url = given
            self.console.print("Redis: using NOTIFYQ_REDIS_URL")
        else:
            # the demo's own Redis starts empty: yesterday's caps are not today's demo
            shutil.rmtree(self.directory / "redis", ignore_errors=True)
            self.redis_server = RedisServer(self.directory / "redis")
            self.redis_server.start()
            redis_url = self.redis_server.url
            self.console.print(
                f"Redis: started a private redis-server on port {self.redis_server.port}"
            )
        sandbox_port, api_port = free_port(), free_port()
        sandbox = f"http://127.0.0.1:{sandbox_port}"
        zone = os.environ.get("NOTIFYQ_TIMEZONE", "Asia/Shanghai")
        env = {
            "NOTIFYQ_REDIS_URL": redis_url,
            "NOTIFYQ_DATABASE_URL": f"sqlite:///{DEMO_DATABASE.resolve()}",
            "NOTIFYQ_TIMEZONE": zone,
            "NOTIFYQ_API_KEYS": "demo-key",
            **sandboxed(sandbox, f"http://127.0.0.1:{api_port}"),
            "NOTIFYQ_JUMDATA_WINDOW": window_opening_soon(ZoneInfo(zone), WINDOW_OPENS_IN),
            "NOTIFYQ_APISPACE_REPORT_INTERVAL": "1",
            "NOTIFYQ_RETRY_BASE": "0.5",
            "NOTIFYQ_RETRY_MAX": "2",
            "NOTIFYQ_MAX_ATTEMPTS": "8",
            "NOTIFYQ_PUMP_INTERVAL": "0.5",
            "NOTIFYQ_DISPATCH_BATCH": "4",
            "NOTIFYQ_SWEEP_INTERVAL": "2",
            "NOTIFYQ_WORKER_METRICS_PORT": "0",
        }
        self.stack = Stack(self.directory, env)
        try:
            with self.console.status("starting the sandbox, the API, a worker and beat…"):
                self.stack.sandbox(
                    sandbox_port,
                    "--receipt-delay",
                    "0.5",
                    "--fail-rate-for",
                    "itniotech=0.3",
                    "--fail-first",
                    "itniotech=2",
                    "--jumdata-window",
                    "",
                    "--outcome",
                    "4=no-answer",
                    "--seed",
                    "1",
                )
                self.stack.api(api_port)
                self.stack.worker("--concurrency", "16")
                self.stack.beat()
            self.console.print(
                f"sandbox {sandbox} · API http://127.0.0.1:{api_port} · logs in {self.directory}"
            )
            yield env
        finally:  # --keep only waits for Ctrl-C first: what the demo starts, it stops
            self.stack.stop()
            if self.redis_server is not None:
                self.redis_server.stop()

    def _create(self, runtime: Any) -> dict[str, int]:

        ids = {}
        for campaign in campaigns():
            path = self.directory / f"{campaign.provider}.csv"
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(campaign.header)
                writer.writerows(campaign.rows)
            spec = CampaignSpec(
                campaign.provider,
                f"demo {campaign.provider}",
                campaign.template,
                campaign.content,
                campaign.options,
            )
            with path.open(newline="", encoding="utf-8") as handle:
                result = import_campaign(runtime, spec, handle)
            ids[campaign.provider] = result.id
        self.console.print(
            f"created {len(ids)} reminder campaigns: "
            + ", ".join(f"{p} #{i}" for p, i in ids.items())
        )
        return ids

    def _watch(self, runtime: Any, ids: dict[str, int]) -> bool:

        bars = Progress(
            TextColumn("{task.description:16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
        )
        tasks = {p: bars.add_task(p, total=1, detail="") for p in ids}
        deadline = time.monotonic() + DEADLINE
        done = False
        with Live(Group(bars), console=self.console, refresh_per_second=4):
            while time.monotonic() < deadline:
                done = True
                for provider, campaign_id in ids.items():
                    view = progress(runtime, campaign_id)
                    counts = view["counts"]
                    final = sum(n for s, n in counts.items() if s not in OPEN)
                    waiting = " ".join(f"{s} {counts[s]}" for s in OPEN if counts.get(s))
                    bars.update(
                        tasks[provider], total=view["total"], completed=final, detail=waiting
                    )
                    done &= final == view["total"]
                if done:
                    break
                self.interrupt.check()
                time.sleep(0.5)
        return done

    def _summary(self, runtime: Any, ids: dict[str, int]) -> None:

        notes = {c.provider: c.note for c in campaigns()}
        n, e = Notification.__table__, Event.__table__
        table = Table(title="demo: where every notification ended")
        for column in ("provider", "total", "delivered", "undelivered", "failed", "unknown"):
            table.add_column(column, justify="left" if column == "provider" else "right")
        table.add_column("deferred→sent", justify="right")
        table.add_column("retried", justify="right")
        table.add_column("held back by (or shows)", max_width=44)
        with runtime.db.read() as conn:
            for provider, campaign_id in ids.items():
                statuses = Counter(
                    s.value
                    for (s,) in conn.execute(
                        select(n.c.status).where(n.c.campaign_id == campaign_id)
                    )
                )
                history = list(
                    conn.execute(
                        select(e.c.notification_id, e.c.to_status, e.c.reason)
                        .join(n, n.c.id == e.c.notification_id)
                        .where(n.c.campaign_id == campaign_id)
                    )
                )
                deferred = {i for i, to, _ in history if to.value == "deferred"}
                retried = {i for i, to, _ in history if to.value == "retrying"}
                reached = {i for i, to, _ in history if to.value == "sent"}
                reasons = sorted(
                    {r for _, to, r in history if to.value in ("deferred", "retrying") and r}
                )
                table.add_row(
                    provider,
                    str(sum(statuses.values())),
                    str(statuses["delivered"]),
                    str(statuses["undelivered"]),
                    str(statuses["failed"]),
                    str(statuses["unknown"]),
                    str(len(deferred & reached)),
                    str(len(retried)),
                    ", ".join(reasons) or notes[provider],
                )
        self.console.print(table)
        self.console.print(
            "undelivered = seeded in the sandbox as unanswered (numbers ending in 4)"
        )

    def _next_steps(self, env: dict[str, str]) -> None:
        api = env["NOTIFYQ_PUBLIC_URL"]
        self.console.print(
            "\n[bold]Next:[/]\n"
            f"  API docs (OpenAPI): {api}/docs, operator page: {api}/ui"
            f" (any user, password {env['NOTIFYQ_API_KEYS']})"
            " — `notifyq demo --keep` leaves them up, with Flower\n"
            "  Histories: `notifyq status ID` (a notification), `notifyq campaign show ID`"
        )
