"""Who of a batch may be sent now, in the order DESIGN.md gives: circuit, window, the
provider's throughput, then every per-number cap — and for the others, until when.

Suppressed numbers are refused first (no check after it may take anything for them).
The per-number caps are checked last because they are the only check that *records*
something for the recipient; nothing that a later check would refuse takes a slot.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as number_zones

from config.settings import ProviderPolicy
from observe.metrics import CAP_LATENCY, SUPPRESSED
from scheduler.caps import CapCheck, Decision
from scheduler.limits import Cap
from scheduler.priority import ORDER, Priority
from scheduler.windows import CallingWindow, next_opening_all
from store.verifications import erased
from tasks import suppressions
from tasks.runtime import Runtime


@dataclass(frozen=True)
class Wait:
    """Not now: try again at ``until`` (epoch s) — ``reason`` says what holds it back."""

    id: int
    until: float
    reason: str


@dataclass(frozen=True)
class Hop:
    """The provider is unavailable and the route has another: move to that leg."""

    id: int
    leg: dict[str, Any]
    rest: list[Any]
    reason: str


@dataclass(frozen=True)
class Refusal:
    """Never to be sent: the number is suppressed (tasks/suppressions.py). Dispatch writes
    it ``failed`` with ``reason`` and ``values`` (the code erased, if it carries one)."""

    id: int
    reason: str
    values: dict[str, Any]


@dataclass
class Admission:
    go: list[Any]
    waits: list[Wait]
    hops: list[Hop]
    #: providers whose half-open circuit lets this batch send its one probe
    probes: set[str]
    #: id → the cap decision that recorded its attempt (to refund it if it is not sent)
    slots: dict[int, Decision] = field(default_factory=dict)
    #: rows whose number is suppressed: they end ``failed`` without a call
    refusals: list[Refusal] = field(default_factory=list)
    #: ``time.monotonic()`` just before the caps were asked: no slot of ``slots`` was
    #: stamped earlier, so a call's deadline (this + the cap margin) is never later than
    #: its stamp + the margin, however long the answer took to come back
    at: float = 0.0


@lru_cache(maxsize=4096)
def _zones_of(number: str) -> tuple[str, ...]:
    try:
        zones = number_zones.time_zones_for_number(phonenumbers.parse(number))
    except phonenumbers.NumberParseException:
        return ()
    return tuple(z for z in zones if z != "Etc/Unknown")


def windows_for(policy: ProviderPolicy, number: str) -> list[CallingWindow]:
    if policy.window is None:
        return []
    if policy.local_time:
        zones = _zones_of(number)
        if zones:
            return [policy.window.in_zone(ZoneInfo(zone)) for zone in zones]
    return [policy.window]


def admit(
    rt: Runtime, rows: Sequence[Any], now: float, campaign_rates: dict[int, Any] | None = None
) -> Admission:
    out = Admission(go=[], waits=[], hops=[], probes=set())
    by_provider: dict[str, list[Any]] = defaultdict(list)
    for row in _suppressed(rt, rows, out):
        by_provider[row.provider].append(row)
    candidates: list[Any] = []
    for provider, rows_of_provider in by_provider.items():
        policy = rt.policies[provider]
        group = _circuit(rt, provider, rows_of_provider, now, out)
        group = _window(policy, provider, group, now, out)
        if group and policy.rate:
            group = _provider_rate(rt, provider, policy.rate, group, now, out)
        candidates += group
    candidates = _campaign_rates(rt, candidates, campaign_rates or {}, out, now)
    checks = [CapCheck(row.provider, row.to, rt.policies[row.provider].caps) for row in candidates]
    out.at = time.monotonic()
    with CAP_LATENCY.time():
        decisions = rt.caps.hit_many(checks)
    for row, decision in zip(candidates, decisions, strict=True):
        if decision.allowed:
            out.go.append(row)
            out.slots[row.id] = decision
        else:
            assert decision.retry_at is not None
            out.waits.append(Wait(row.id, decision.retry_at, f"cap:{row.provider}:{decision.cap}"))
    return out


def _suppressed(rt: Runtime, rows: Sequence[Any], out: Admission) -> list[Any]:
    """First of all, and before any cap slot is taken: a suppressed number is refused
    (or, suppressed by this provider only, moved to the next leg of its route). One
    query for the whole batch."""
    found = suppressions.hits(rt, [(row.provider, row.to) for row in rows])
    if not found:
        return list(rows)
    passing: list[Any] = []
    for row in rows:
        hit = found.get((row.provider, row.to))
        if hit is None:
            passing.append(row)
        elif row.route and not hit.everywhere:
            leg, *rest = row.route
            out.hops.append(Hop(row.id, leg, rest, f"suppressed:{row.provider}:{hit.reason}"))
        else:
            reason = suppressions.refusal_reason(hit.reason)
            out.refusals.append(Refusal(row.id, reason, {"next_attempt_at": None, **erased(row)}))
            SUPPRESSED.labels(row.provider, hit.reason).inc()
    return passing


def _provider_rate(
    rt: Runtime, provider: str, rates: Sequence[Cap], group: list[Any], now: float, out: Admission
) -> list[Any]:
    """A provider's throughput, class by class, most urgent first: urgent and normal take
    their slots first and may fill a whole burst; bulk takes what they leave, up to its
    share of a burst (scheduler/rates.py), so a code finds room even while a campaign
    keeps the rate saturated, and the campaign's rows are the ones that wait."""
    by_class: dict[Priority, list[Any]] = defaultdict(list)
    for row in group:
        by_class[Priority(row.priority)].append(row)
    passing: list[Any] = []
    for priority in ORDER:
        if by_class[priority]:
            reach = rt.settings.bulk_share if priority is Priority.BULK else 1.0
            key, reason = f"provider:{provider}", f"rate:{provider}"
            passing += _throughput(rt, key, rates, by_class[priority], reason, now, out, reach)
    return passing


def _campaign_rates(
    rt: Runtime, rows: list[Any], rates: dict[int, Any], out: Admission, now: float
) -> list[Any]:
    """A campaign's own throughput cap, beside its provider's."""
    by_campaign: dict[int, list[Any]] = defaultdict(list)
    passing: list[Any] = []
    for row in rows:
        if row.campaign_id is not None and rates.get(row.campaign_id):
            by_campaign[row.campaign_id].append(row)
        else:
            passing.append(row)
    for campaign_id, group in by_campaign.items():
        key, reason = f"campaign:{campaign_id}", f"rate:campaign:{campaign_id}"
        passing += _throughput(rt, key, rates[campaign_id], group, reason, now, out)
    return passing


def _throughput(
    rt: Runtime,
    key: str,
    rates: Sequence[Cap],
    group: list[Any],
    reason: str,
    now: float,
    out: Admission,
    reach: float = 1.0,
) -> list[Any]:
    """Take a throughput cap for as many of ``group`` as the ``reach`` of one burst
    allows (never more: the GCRA would let an oversize batch through whole); the rest
    wait, each for the moment the rate will admit it (one interval apart), so the cap
    is used, not wasted."""
    burst = max(1, math.floor(min(rate.amount for rate in rates) * reach))
    interval = max(rate.window / rate.amount for rate in rates)
    going, rest = group[:burst], group[burst:]
    taken = rt.rates.take(key, rates, len(going), reach=reach)
    if not taken.allowed:
        assert taken.retry_at is not None
        out.waits += [
            Wait(row.id, taken.retry_at + i * interval, reason) for i, row in enumerate(group)
        ]
        return []
    start = max(now, taken.now)
    out.waits += [Wait(row.id, start + (i + 1) * interval, reason) for i, row in enumerate(rest)]
    return going


def _circuit(rt: Runtime, provider: str, group: list[Any], now: float, out: Admission) -> list[Any]:
    state = rt.circuit.state(provider, now)
    if state.allowed and not state.probe:
        return group
    passing = group[:1] if state.allowed else []  # half-open: exactly one probe
    if passing:
        out.probes.add(provider)
    retry_at = state.retry_at if state.retry_at is not None else now + 5.0
    for row in group[len(passing) :]:
        if row.route:
            leg, *rest = row.route
            out.hops.append(Hop(row.id, leg, rest, f"circuit:{provider}"))
        else:
            out.waits.append(Wait(row.id, retry_at, f"circuit:{provider}"))
    return passing


def _window(
    policy: ProviderPolicy, provider: str, group: list[Any], now: float, out: Admission
) -> list[Any]:
    if policy.window is None:
        return group
    moment = datetime.fromtimestamp(now, UTC)
    open_now = []
    for row in group:
        windows = windows_for(policy, row.to)
        opening = next_opening_all(windows, moment)
        if opening is None:  # the number's zones share no hour: the configured zone decides
            opening = policy.window.next_opening(moment)
        if opening <= moment:
            open_now.append(row)
        else:
            out.waits.append(Wait(row.id, opening.timestamp(), f"window:{provider}"))
    return open_now
