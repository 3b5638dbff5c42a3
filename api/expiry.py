"""Receipts for references we never handed out expire (``NOTIFYQ_RECEIPT_UNKNOWN_TTL``).

A receipt is kept even when its reference names no notification yet, because the
provider may push before our ``sent`` is committed (``store/receipts.py``). But a
reference that still names nothing after days never will: without an end, anyone who
learns a callback URL could fill the ledger with receipts for made-up references. The
API, the door those receipts come through, sweeps them: once at start-up, then every
tenth of the TTL (at most every ten minutes). Several API processes sweeping at once
delete the same rows; that is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import and_, delete, exists, select
from starlette.concurrency import run_in_threadpool

from api.background import running
from store.schema import Notification, Receipt
from tasks.runtime import Runtime

log = logging.getLogger(__name__)
R = Receipt.__table__
N = Notification.__table__
MAX_INTERVAL = 600.0


def purge_unknown_receipts(runtime: Runtime, *, now: float | None = None) -> int:
    """Delete receipts older than the TTL that were never applied and whose reference no
    notification holds (an unapplied receipt whose notification exists is kept: it waits
    for that notification's ``sent``). Returns how many went."""
    now = time.time() if now is None else now
    cutoff = now - runtime.settings.receipt_unknown_ttl
    known = exists(
        select(N.c.id).where(
            and_(N.c.provider == R.c.provider, N.c.provider_ref == R.c.provider_ref)
        )
    )
    statement = delete(R).where(
        R.c.applied_at.is_(None), R.c.notification_id.is_(None), R.c.received_at < cutoff, ~known
    )
    with runtime.db.write() as conn:
        gone = conn.execute(statement).rowcount or 0
    if gone:
        log.info("deleted %d receipt(s) for unknown references older than the TTL", gone)
    return gone


async def sweep_forever(runtime: Runtime) -> None:
    """The API's background sweep; a failed pass is logged and tried again next time."""

    interval = min(MAX_INTERVAL, runtime.settings.receipt_unknown_ttl / 10)
    while True:
        try:
            await run_in_threadpool(purge_unknown_receipts, runtime)
        except Exception as exc:  # a database hiccup must not end the sweep for good
            log.warning("receipt expiry pass failed: %s", type(exc).__name__)
        await asyncio.sleep(interval)


def receipt_sweep(runtime: Runtime) -> contextlib.AbstractAsyncContextManager[None]:
    """The sweep, beside the app while it serves."""
    return running(sweep_forever(runtime))
