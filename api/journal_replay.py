"""The API applies the callbacks journalled while the store was away (tasks/journal.py)
as soon as the store answers again: a look at the journal's length every
:data:`INTERVAL` seconds, and when something waits, each entry applied as its route
would have applied it, then removed.

Every API process replays; two replaying at once apply some entries twice, which
changes nothing (receipts are unique by provider and reference, a template's audit is
an upsert). An entry that fails for a reason other than the store being away (a body
this version cannot read) is set aside with the reason, logged once, and never blocks
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.background import running
from scheduler.availability import redis_away
from store.availability import store_away
from tasks.journal import CallbackJournal
from tasks.runtime import Runtime

log = logging.getLogger(__name__)

#: seconds between looks at the journal
INTERVAL = 1.0

Apply = Callable[[Runtime, str, Any], None]


def replay(runtime: Runtime, journal: CallbackJournal, apply: Apply) -> int:
    """Apply and remove every waiting entry; returns how many were applied. Stops at the
    first that meets the store away (raised: the next pass tries again)."""
    applied = 0
    for entry in journal.entries():
        try:
            apply(runtime, entry.route, entry.data)
        except Exception as error:
            if store_away(error) or redis_away(error):
                raise
            log.error("journalled %s callback %s set aside: %s", entry.route, entry.id, error)
            journal.set_aside(entry, str(error)[:500])
            continue
        journal.remove(entry)
        applied += 1
    if applied:
        log.info("applied %d callback(s) journalled while the store was away", applied)
    return applied


async def replay_forever(runtime: Runtime, journal: CallbackJournal, apply: Apply) -> None:
    while True:
        with contextlib.suppress(Exception):  # away: the outage watches say so once
            if await run_in_threadpool(journal.waiting):
                await run_in_threadpool(replay, runtime, journal, apply)
        await asyncio.sleep(INTERVAL)


def journal_replay(
    runtime: Runtime, journal: CallbackJournal, apply: Apply
) -> contextlib.AbstractAsyncContextManager[None]:
    """The replay, beside the app while it serves."""
    return running(replay_forever(runtime, journal, apply))
