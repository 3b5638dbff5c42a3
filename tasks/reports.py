"""Delivery reports that must be *pulled* (APISpace voice): pull, journal, parse, record.

The report endpoint is pull-and-delete: a page the server has sent is gone from it. So
the raw body of every pull is committed to the journal before anything parses it; the
receipts it holds and the journal row's "parsed" mark are then written in one
transaction. A crash between the two leaves an unparsed journal row, which the next
pull parses first (receipts are unique by provider and reference, so parsing twice
stores nothing twice). A pull that times out after it was sent may have emptied a page
we never saw: that is logged loudly, never repeated blind.

Pages are pulled while they come back full. One poller at a time is the caller's
business (the beat task wraps :func:`pull_reports` in a Redis lock).
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import LockError

from providers.base import MissingCredentials, Provider, Reply, UnreadableReply
from providers.http import Failure
from tasks.runtime import Runtime, get_runtime
from worker.app import celery
from worker.store import NewReceipt

log = logging.getLogger(__name__)

#: stop after this many pages in one run, so one poll never runs unbounded
MAX_PAGES = 100
POLL_LOCK = "nq:lock:poll-reports"
#: longer than MAX_PAGES pulls can take; a crashed poller frees the lock after it
POLL_LOCK_TTL = 600


def pull_reports(rt: Runtime) -> int:
    """Pull every waiting report of every provider that pulls; returns receipts stored."""
    stored = 0
    for name, provider in rt.providers.items():
        if provider.pulls_reports:
            stored += _replay_journal(rt, name, provider)
            stored += _pull(rt, name, provider)
    return stored


def _pull(rt: Runtime, name: str, provider: Provider) -> int:
    page_size = rt.settings.apispace_report_page
    stored = 0
    for _ in range(MAX_PAGES):
        try:
            call = provider.report_call(page_size)
        except MissingCredentials as exc:
            log.warning("%s reports not pulled: %s", name, exc)
            break
        answer = rt.transport.perform(call)
        if isinstance(answer, Failure):
            if answer.sent:
                log.error(
                    "%s report pull got no answer after it was sent (%s): "
                    "that page may be lost on the provider's side",
                    name,
                    answer.code,
                )
            else:
                log.warning("%s report pull did not reach the provider (%s)", name, answer.code)
            break
        try:
            pull_id = rt.receipts.journal(name, answer.text())
        except Exception:
            log.exception(
                "%s report page (%d bytes) pulled but not journalled: its reports are lost",
                name,
                len(answer.body),
            )
            raise
        count, size = _parse(rt, name, provider, pull_id, answer)
        stored += count
        if size < page_size:
            break
    return stored


def _replay_journal(rt: Runtime, name: str, provider: Provider) -> int:
    """Bodies journalled by an earlier run that died before parsing them."""
    stored = 0
    for row in rt.receipts.unparsed_journal(name):
        count, _ = _parse(rt, name, provider, row.id, Reply(200, row.body.encode("utf-8")))
        stored += count
    return stored


def _parse(
    rt: Runtime, name: str, provider: Provider, pull_id: int, reply: Reply
) -> tuple[int, int]:
    """Parse one journalled body; store its receipts and mark it, in one transaction.
    Returns (receipts stored, entries on the page)."""
    now = time.time()
    try:
        page = provider.read_report(reply)
    except UnreadableReply as exc:
        log.error("%s report pull %d is unreadable: %s (kept in the journal)", name, pull_id, exc)
        with rt.db.write() as conn:
            rt.receipts.mark_journal(
                conn, pull_id, reports=None, error=f"http:{reply.status} {exc}"[:255], now=now
            )
        return 0, 0
    records = [
        NewReceipt(name, r.ref, r.delivered, r.code, r.message, dict(r.detail))
        for r in page.receipts
    ]
    error = f"skipped {page.skipped} unreadable report(s)" if page.skipped else None
    if error:
        log.warning("%s report pull %d: %s (kept in the journal)", name, pull_id, error)
    with rt.db.write() as conn:
        rt.receipts.insert(conn, records, now)
        rt.receipts.apply(conn, [(name, r.provider_ref) for r in records], now)
        rt.receipts.mark_journal(conn, pull_id, reports=len(records), error=error, now=now)
    return len(records), page.size


@celery.task(name="notifyq.poll_reports")
def poll_reports() -> int:
    """On beat: one poller at a time (a Redis lock with a TTL, so a second beat or a slow
    poll never pulls in parallel — two pullers would each delete what the other missed)."""
    rt = get_runtime()
    lock = rt.redis.lock(POLL_LOCK, timeout=POLL_LOCK_TTL, blocking=False)
    if not lock.acquire():
        log.info("report poll skipped: another poller holds the lock")
        return 0
    try:
        return pull_reports(rt)
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("report poll outlived its lock (%ss): raise POLL_LOCK_TTL", POLL_LOCK_TTL)
