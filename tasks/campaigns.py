"""Reminder campaigns (placeholder until the campaign issue lands: only the check that
dispatch needs — whether a campaign's notifications may go now)."""

from __future__ import annotations

from sqlalchemy import select

from tasks.runtime import Runtime
from worker.store.schema import Campaign

C = Campaign.__table__


def campaign_is_running(rt: Runtime, campaign_id: int) -> bool:
    with rt.db.read() as conn:
        status = conn.execute(select(C.c.status).where(C.c.id == campaign_id)).scalar_one_or_none()
    return status == "running"
