"""Release (``notifyq.campaigns`` on beat, every second): start what is due, top the
broker's dispatch queue up, finish what is done.

It is the back-pressure: it keeps ``NOTIFYQ_RELEASE_LEAD`` seconds of work in the
broker's bulk queue, measured from how fast the workers take it (tasks/campaigns/pace.py),
and never more than ``NOTIFYQ_RELEASE_HIGH_WATER`` messages, sharing the room between
running campaigns: Redis never holds a campaign's backlog, so a pause or a cancel acts
within seconds. Codes and single notifications have queues of their own, taken first
(worker/queues.py): they never wait behind this one. Recurring campaigns start a run on their
cron, one transaction per occurrence (``CampaignStore.start_run``), so two fan-outs
never start one occurrence twice.

A campaign's own throughput cap is enforced where every cap is — at admission, per
send — so pauses, retries and deferrals cannot make it burst.
"""

from __future__ import annotations

import logging
from typing import Any

from scheduler.priority import Priority
from store.campaigns import (
    COMPLETED,
    RUNNING,
    SCHEDULED,
    CampaignStore,
)
from tasks.alone import alone
from tasks.campaigns import campaigns
from tasks.campaigns.intake import next_occurrence
from tasks.campaigns.pace import measure, record
from tasks.publish import publish_dispatch
from tasks.runtime import Runtime, get_runtime
from worker.app import celery
from worker.queues import BULK_QUEUE

log = logging.getLogger(__name__)


FANOUT_LOCK = "nq:lock:campaigns"


# beat's, four or five a second: kept out of Flower's history (worker/beat.py)
@celery.task(name="notifyq.campaigns", send_events=False)
def run_campaigns() -> dict[str, int]:
    rt = get_runtime()
    return alone(rt, FANOUT_LOCK, 60, lambda: fan_out(rt))


def fan_out(rt: Runtime, now: float | None = None) -> dict[str, int]:
    now = rt.redis_now() if now is None else now  # one clock for every host
    store = campaigns(rt)
    started = _start_due(rt, store, now)
    running = store.with_status(RUNNING)
    batch = rt.settings.dispatch_batch
    pace = measure(
        rt.redis,
        now,
        int(rt.redis.llen(BULK_QUEUE)),
        lead=rt.settings.release_lead,
        high_water=rt.settings.release_high_water,
    )
    room = pace.room * batch
    released = published = 0
    if running and room > 0:
        share = max(batch, room // len(running))
        for campaign in running:
            ids = store.release(campaign.id, share, now)
            if ids:
                published += publish_dispatch(rt.celery, ids, batch=batch, priority=Priority.BULK)
                released += len(ids)
    record(rt.redis, now, pace, published)
    finished = sum(_maybe_finish(rt, store, c, now) for c in running)
    return {"started": started, "released": released, "finished": finished}


def _start_due(rt: Runtime, store: CampaignStore, now: float) -> int:
    started = 0
    for campaign in store.with_status(SCHEDULED):
        if campaign.next_run_at is not None and campaign.next_run_at > now:
            continue
        if campaign.cron:
            nxt = next_occurrence(campaign.cron, now, rt.settings.zone)
            made = store.start_run(campaign, now, nxt)
            if made is None:  # another fan-out started this occurrence
                continue
            log.info(
                "campaign %s: run %d started with %d notifications",
                campaign.id,
                campaign.runs + 1,
                made,
            )
        elif not store.set_status(
            campaign.id, RUNNING, expect=[SCHEDULED], started_at=now, runs=campaign.runs + 1
        ):
            continue  # another fan-out started it
        started += 1
    return started


def _maybe_finish(rt: Runtime, store: CampaignStore, campaign: Any, now: float) -> int:
    if store.has_open(campaign.id):
        return 0
    if campaign.cron:  # a recurring campaign waits for its next occurrence
        store.set_status(campaign.id, SCHEDULED, expect=[RUNNING])
    else:
        store.set_status(campaign.id, COMPLETED, expect=[RUNNING])
    return 1
