"""Reminder campaigns: a CSV imported as it streams (``intake``), released as workers keep
up and run again on a cron (``release``), and held by the operator (``control``).

``campaigns(rt)`` is the one store they share; the modules import it from here and
nothing else, so the package imports none of its own modules at import.
"""

from __future__ import annotations

from store.campaigns import CampaignStore
from tasks.runtime import Runtime


def campaigns(rt: Runtime) -> CampaignStore:
    return CampaignStore(rt.db, rt.notifications)
