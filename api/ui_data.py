"""What the operator page (``/ui``) shows, read from the ledger and Redis: notifications by
provider and status, the priority lanes (queue depth, current p99 from enqueue to call),
what waits and why, campaigns and their progress, circuits, and one number's caps.
Read-only; every number leaves here masked."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from providers.numbers import e164, mask, parse_number
from scheduler.priority import ORDER
from store.schema import Campaign, Notification
from store.status import Status
from tasks import latency
from tasks.runtime import Runtime
from worker.queues import DISPATCH_QUEUES

N = Notification.__table__
C = Campaign.__table__
#: a campaign's notifications in these are finished
DONE = {"delivered", "undelivered", "failed", "cancelled", "unknown"}
STATUS_ORDER = [s.value for s in Status]


@dataclass(frozen=True)
class Waiting:
    provider: str
    status: str
    reason: str
    count: int
    #: the earliest moment one of them may go again
    next_release: float | None


@dataclass(frozen=True)
class CampaignRow:
    id: int
    name: str
    provider: str
    status: str
    total: int
    done: int
    counts: dict[str, int]


@dataclass(frozen=True)
class CircuitRow:
    provider: str
    open: bool
    retry_at: float | None
    reason: str | None


@dataclass(frozen=True)
class CapUse:
    cap: str
    used: int
    amount: int
    #: when one more attempt is allowed again, if the cap is full now
    frees_at: float | None


@dataclass(frozen=True)
class Lane:
    """One priority class: the messages waiting in its broker queue, and how long its
    notifications waited from enqueue to call lately (tasks/latency.py)."""

    priority: str
    queue: str
    depth: int
    samples: int
    p99: float | None


@dataclass
class NumberCaps:
    number: str
    by_provider: dict[str, list[CapUse]] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)
    recent: list[dict[str, Any]] = field(default_factory=list)


def by_status(rt: Runtime) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {p: {} for p in rt.providers}
    with rt.db.read() as conn:
        for provider, status, count in conn.execute(
            select(N.c.provider, N.c.status, func.count()).group_by(N.c.provider, N.c.status)
        ):
            table.setdefault(provider, {})[Status(status).value] = count
    return table


def lanes(rt: Runtime) -> list[Lane]:
    depths = [int(rt.redis.llen(DISPATCH_QUEUES[p.value])) for p in ORDER]
    return [
        Lane(c.priority, DISPATCH_QUEUES[c.priority], depth, c.samples, c.p99)
        for c, depth in zip(latency.current(rt, now()), depths, strict=True)
    ]


def waiting(rt: Runtime) -> list[Waiting]:
    with rt.db.read() as conn:
        rows = conn.execute(
            select(
                N.c.provider, N.c.status, N.c.reason, func.count(), func.min(N.c.next_attempt_at)
            )
            .where(N.c.status.in_([Status.DEFERRED, Status.RETRYING]))
            .group_by(N.c.provider, N.c.status, N.c.reason)
            .order_by(func.min(N.c.next_attempt_at))
        )
        return [
            Waiting(provider, Status(status).value, reason or "", count, first)
            for provider, status, reason, count, first in rows
        ]


def campaigns(rt: Runtime, limit: int = 20) -> list[CampaignRow]:
    with rt.db.read() as conn:
        found = list(
            conn.execute(
                select(C.c.id, C.c.name, C.c.provider, C.c.status)
                .order_by(C.c.id.desc())
                .limit(limit)
            )
        )
        counts: dict[int, dict[str, int]] = {row.id: {} for row in found}
        if counts:
            for campaign_id, status, count in conn.execute(
                select(N.c.campaign_id, N.c.status, func.count())
                .where(N.c.campaign_id.in_(list(counts)))
                .group_by(N.c.campaign_id, N.c.status)
            ):
                counts[campaign_id][Status(status).value] = count
    return [
        CampaignRow(
            row.id,
            row.name,
            row.provider,
            row.status,
            sum(counts[row.id].values()),
            sum(n for s, n in counts[row.id].items() if s in DONE),
            counts[row.id],
        )
        for row in found
    ]


def circuits(rt: Runtime) -> list[CircuitRow]:
    now = rt.redis_now()
    rows = []
    for provider in rt.providers:
        state = rt.circuit.state(provider, now)
        rows.append(
            CircuitRow(provider, not state.allowed or state.probe, state.retry_at, state.reason)
        )
    return rows


def normalise(raw: str) -> str | None:
    parsed = parse_number(raw.strip())
    return e164(parsed) if parsed is not None else None


def number_caps(rt: Runtime, number: str) -> NumberCaps:
    """Each provider's caps as this number stands against them now, and its latest
    notifications (masked)."""
    view = NumberCaps(mask(number))
    for provider, policy in rt.policies.items():
        state = rt.caps.state(provider, number, policy.caps)  # decoded as the scripts read it
        if state.blocked_until is not None:
            view.blocked_until[provider] = state.blocked_until
        uses = [CapUse(w.cap.text, w.used, w.cap.amount, w.frees_at) for w in state.windows]
        if uses:
            view.by_provider[provider] = uses
    with rt.db.read() as conn:
        for row in conn.execute(
            select(N.c.id, N.c.provider, N.c.status, N.c.reason, N.c.created_at)
            .where(N.c.to == number)
            .order_by(N.c.id.desc())
            .limit(10)
        ):
            view.recent.append(
                {
                    "id": row.id,
                    "provider": row.provider,
                    "status": Status(row.status).value,
                    "reason": row.reason or "",
                    "created_at": row.created_at,
                }
            )
    return view


def now() -> float:
    return time.time()
