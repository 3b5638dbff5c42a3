"""An operator's hold on a campaign: pause, resume, cancel, and its progress.

Each is a compare-and-set on the campaign's status (a pause racing the fan-out or a
second pause changes nothing twice); cancel ends the campaign's unsent rows in chunks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scheduler.limits import parse_caps
from store.campaigns import (
    CANCELLED,
    IMPORTING,
    PAUSED,
    RUNNING,
    SCHEDULED,
)
from store.suppressions import SuppressionStore
from tasks.campaigns import campaigns
from tasks.runtime import Runtime


class CampaignStateError(Exception):
    """A control that the campaign's status does not allow (pause a completed one)."""


def pause(rt: Runtime, campaign_id: int) -> str:
    store = campaigns(rt)
    if not store.set_status(campaign_id, PAUSED, expect=[SCHEDULED, RUNNING]):
        raise CampaignStateError(f"campaign {campaign_id} is not scheduled or running")
    store.unrelease(campaign_id)
    return PAUSED


def resume(rt: Runtime, campaign_id: int) -> str:
    store = campaigns(rt)
    campaign = store.get(campaign_id)
    target = RUNNING if campaign is not None and campaign.started_at is not None else SCHEDULED
    if not store.set_status(campaign_id, target, expect=[PAUSED]):
        raise CampaignStateError(f"campaign {campaign_id} is not paused")
    return target


def cancel(rt: Runtime, campaign_id: int) -> int:
    """Cancel the campaign and every notification of it not yet handed to a provider."""
    store = campaigns(rt)
    if not store.set_status(campaign_id, CANCELLED, expect=[SCHEDULED, RUNNING, PAUSED, IMPORTING]):
        now_is = store.statuses([campaign_id]).get(campaign_id, "gone")
        raise CampaignStateError(f"campaign {campaign_id} is already {now_is}")
    # rows still in the broker or the deferred set find themselves cancelled: dispatch skips them
    return store.cancel_rows(campaign_id)


@dataclass(frozen=True)
class CampaignState:
    status: str
    rate: tuple[Any, ...]


def campaign_states(rt: Runtime, ids: Iterable[int]) -> dict[int, CampaignState]:
    """Status and throughput cap of each campaign a dispatch batch touches (one query)."""
    return {
        campaign_id: CampaignState(status, parse_caps(rate))
        for campaign_id, (status, rate) in campaigns(rt).states(ids).items()
    }


DONE = {"sent", "delivered", "undelivered", "failed", "cancelled", "unknown"}


def progress(rt: Runtime, campaign_id: int, now: float | None = None) -> dict[str, Any] | None:
    store = campaigns(rt)
    campaign = store.get(campaign_id)
    if campaign is None:
        return None
    now = time.time() if now is None else now
    counts = store.counts(campaign_id)
    total = sum(counts.values())
    done = sum(n for s, n in counts.items() if s in DONE)
    elapsed = now - campaign.started_at if campaign.started_at else 0.0
    rate = done / elapsed if elapsed > 0 else 0.0
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "provider": campaign.provider,
        "cron": campaign.cron,
        "next_run_at": _iso(campaign.next_run_at),
        "started_at": _iso(campaign.started_at),
        "runs": campaign.runs,
        "total": total,
        "accepted": campaign.total,
        "rejected": campaign.rejected,
        "errors": campaign.errors[:20],
        "counts": counts,
        # of the failed, those whose number is suppressed (never called)
        "suppressed": SuppressionStore(rt.db).suppressed_in_campaign(campaign_id)
        if counts.get("failed")
        else 0,
        "done": done,
        "percent": round(100.0 * done / total, 1) if total else 100.0,
        "rate_per_s": round(rate, 2),
        "eta_s": round((total - done) / rate) if rate > 0 and done < total else None,
    }


def _iso(moment: float | None) -> str | None:
    return (
        None
        if moment is None
        else datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
    )
