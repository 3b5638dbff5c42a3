"""Who of a batch may be sent now, in this order: circuit, window, the provider's
throughput, then every per-number cap — and for the others, until when.

Suppressed numbers are refused first (no check after it may take anything for them).
The per-number caps are checked last because they are the only check that *records*
something for the recipient; nothing that a later check would refuse takes a slot.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as number_zones

from config.settings import ProviderPolicy
from observe.metrics import SUPPRESSED
from scheduler.limits import Cap
from scheduler.priority import ORDER, Priority
from scheduler.windows import CallingWindow, next_opening_all
from store import NotificationRow, RouteLeg
from store.verifications import erased
from tasks import suppressions
from tasks.attempts import Attempts
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
    #: the leg the row moves to
    leg: RouteLeg
    #: the legs after it: the row's route once it has moved
    rest: tuple[RouteLeg, ...]
    reason: str

    @classmethod
    def onward(cls, row: NotificationRow, reason: str) -> Hop:
        """``row`` moves to the first leg of its route (it must have one)."""
        return cls(row.id, row.route[0], row.route[1:], reason)


@dataclass(frozen=True)
class Refusal:
    """Never to be sent: the number is suppressed (tasks/suppressions.py). Dispatch writes
    it ``failed`` with ``reason`` and ``values`` (the code erased, if it carries one)."""

    id: int
    reason: str
    values: Mapping[str, object]


@dataclass
class Admission:
    #: the cap slots of the rows that go (tasks/attempts.py): ``attempts.admitted``
    attempts: Attempts
    waits: list[Wait] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)
    #: providers whose half-open circuit lets this batch send its one probe
    probes: set[str] = field(default_factory=set)
    #: rows whose number is suppressed: they end ``failed`` without a call
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def go(self) -> list[NotificationRow]:
        """The rows that may be sent now (each holds its cap slot)."""
        return self.attempts.admitted


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


#: a batch's rows, as the checks pass them on
Rows = list[NotificationRow]


def admit(
    rt: Runtime,
    rows: Sequence[NotificationRow],
    now: float,
    campaign_rates: Mapping[int, Sequence[Cap]] | None = None,
) -> Admission:
    out = Admission(Attempts(rt.caps, rt.policies, rt.settings.cap_margin))
    by_provider: dict[str, Rows] = defaultdict(list)
    for row in _suppressed(rt, rows, out):
        by_provider[row.provider].append(row)
    candidates: Rows = []
    for provider, rows_of_provider in by_provider.items():
        policy = rt.policies[provider]
        group = _circuit(rt, provider, rows_of_provider, now, out)
        group = _window(policy, provider, group, now, out)
        if group and policy.rate:
            group = _provider_rate(rt, provider, policy.rate, group, now, out)
        candidates += group
    candidates = _campaign_rates(rt, candidates, campaign_rates or {}, out, now)
    for row, decision in out.attempts.take(candidates):
        assert decision.retry_at is not None
        out.waits.append(Wait(row.id, decision.retry_at, f"cap:{row.provider}:{decision.cap}"))
    return out


def _suppressed(rt: Runtime, rows: Sequence[NotificationRow], out: Admission) -> Rows:
    """First of all, and before any cap slot is taken: a suppressed number is refused
    (or, suppressed by this provider only, moved to the next leg of its route). One
    query for the whole batch."""
    found = suppressions.hits(rt, [(row.provider, row.to) for row in rows])
    if not found:
        return list(rows)
    passing: Rows = []
    for row in rows:
        hit = found.get((row.provider, row.to))
        if hit is None:
            passing.append(row)
        elif row.route and not hit.everywhere:
            out.hops.append(Hop.onward(row, f"suppressed:{row.provider}:{hit.reason}"))
        else:
            reason = suppressions.refusal_reason(hit.reason)
            out.refusals.append(Refusal(row.id, reason, {"next_attempt_at": None, **erased(row)}))
            SUPPRESSED.labels(row.provider, hit.reason).inc()
    return passing


def _provider_rate(
    rt: Runtime, provider: str, rates: Sequence[Cap], group: Rows, now: float, out: Admission
) -> Rows:
    """A provider's throughput, class by class, most urgent first: urgent and normal take
    their slots first and may fill a whole burst; bulk takes what they leave, up to its
    share of a burst (scheduler/rates.py), so a code finds room even while a campaign
    keeps the rate saturated, and the campaign's rows are the ones that wait."""
    by_class: dict[Priority, Rows] = defaultdict(list)
    for row in group:
        by_class[Priority(row.priority)].append(row)
    passing: Rows = []
    for priority in ORDER:
        if by_class[priority]:
            reach = rt.settings.bulk_share if priority is Priority.BULK else 1.0
            key, reason = f"provider:{provider}", f"rate:{provider}"
            passing += _throughput(rt, key, rates, by_class[priority], reason, now, out, reach)
    return passing


def _campaign_rates(
    rt: Runtime, rows: Rows, rates: Mapping[int, Sequence[Cap]], out: Admission, now: float
) -> Rows:
    """A campaign's own throughput cap, beside its provider's."""
    by_campaign: dict[int, Rows] = defaultdict(list)
    passing: Rows = []
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
    group: Rows,
    reason: str,
    now: float,
    out: Admission,
    reach: float = 1.0,
) -> Rows:
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


def _circuit(rt: Runtime, provider: str, group: Rows, now: float, out: Admission) -> Rows:
    state = rt.circuit.state(provider, now)
    if state.allowed and not state.probe:
        return group
    passing = group[:1] if state.allowed else []  # half-open: exactly one probe
    if passing:
        out.probes.add(provider)
    retry_at = state.retry_at if state.retry_at is not None else now + 5.0
    for row in group[len(passing) :]:
        if row.route:
            out.hops.append(Hop.onward(row, f"circuit:{provider}"))
        else:
            out.waits.append(Wait(row.id, retry_at, f"circuit:{provider}"))
    return passing


def _window(policy: ProviderPolicy, provider: str, group: Rows, now: float, out: Admission) -> Rows:
    if policy.window is None:
        return group
    moment = datetime.fromtimestamp(now, UTC)
    open_now: Rows = []
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
