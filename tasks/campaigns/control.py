"""An operator's hold on a campaign: pause, resume, cancel, and its progress.

Each is a compare-and-set on the campaign's status (a pause racing the fan-out or a
second pause changes nothing twice); cancel ends the campaign's unsent rows in chunks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from scheduler.limits import parse_caps
from store.campaigns import (
    CANCELLED,
    IMPORTING,
    PAUSED,
    RUNNING,
    SCHEDULED,
    CampaignSummary,
)
from store.keys import CLI_ACTOR
from store.suppressions import SuppressionStore
from tasks.campaigns import campaigns
from tasks.runtime import Runtime

log = logging.getLogger(__name__)


class CampaignStateError(Exception):
    """A control that the campaign's status does not allow (pause a completed one)."""


def pause(rt: Runtime, campaign_id: int, *, owner: str | None = None, by: str = CLI_ACTOR) -> str:
    """``owner``: only that key name's campaign (another's is left alone, as if there
    were none); ``by`` names who asked, in the log."""
    store = campaigns(rt)
    if not store.set_status(campaign_id, PAUSED, expect=[SCHEDULED, RUNNING], owner=owner):
        raise CampaignStateError(f"campaign {campaign_id} is not scheduled or running")
    store.unrelease(campaign_id)
    log.info("campaign %s paused by %s", campaign_id, by)
    return PAUSED


def resume(rt: Runtime, campaign_id: int, *, owner: str | None = None, by: str = CLI_ACTOR) -> str:
    store = campaigns(rt)
    campaign = store.get(campaign_id, owner=owner)
    target = RUNNING if campaign is not None and campaign.started_at is not None else SCHEDULED
    if campaign is None or not store.set_status(campaign_id, target, expect=[PAUSED], owner=owner):
        raise CampaignStateError(f"campaign {campaign_id} is not paused")
    log.info("campaign %s resumed by %s", campaign_id, by)
    return target


def cancel(rt: Runtime, campaign_id: int, *, owner: str | None = None, by: str = CLI_ACTOR) -> int:
    """Cancel the campaign and every notification of it not yet handed to a provider;
    each row's event names ``by``."""
    store = campaigns(rt)
    waiting = [SCHEDULED, RUNNING, PAUSED, IMPORTING]
    if not store.set_status(campaign_id, CANCELLED, expect=waiting, owner=owner):
        now_is = store.statuses([campaign_id]).get(campaign_id, "gone")
        raise CampaignStateError(f"campaign {campaign_id} is already {now_is}")
    log.info("campaign %s cancelled by %s", campaign_id, by)
    # rows still in the broker or the deferred set find themselves cancelled: dispatch skips them
    return store.cancel_rows(campaign_id, by=by)


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


def summary(campaign: CampaignSummary) -> dict[str, Any]:
    """One line of a campaign list, times in ISO 8601."""
    return {
        **asdict(campaign),
        "next_run_at": _iso(campaign.next_run_at),
        "created_at": _iso(campaign.created_at),
    }


def progress(
    rt: Runtime, campaign_id: int, now: float | None = None, *, owner: str | None = None
) -> dict[str, Any] | None:
    """None for a campaign that does not exist and, with ``owner``, for another key
    name's: its counts are read only once the campaign is found as that name's."""
    store = campaigns(rt)
    campaign = store.get(campaign_id, owner=owner)
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
        "owner": campaign.owner,
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
