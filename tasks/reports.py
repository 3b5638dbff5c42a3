"""Delivery reports that must be *pulled* (APISpace voice): pull, journal, parse, record.

The report endpoint is pull-and-delete: a page the server has sent is gone from it. So
the raw body of every pull is committed to the journal before anything of it is stored
(it may be read meanwhile: reading writes nothing); the receipts it holds and the
journal row's "parsed" mark are then written in one transaction. A crash between the
two leaves an unparsed journal row, which the next pull parses first (receipts are
unique by provider and reference, so parsing twice stores nothing twice). A pull that
times out after it was sent may have emptied a page we never saw: that is logged
loudly, never repeated blind.

Pages are pulled while they come back non-empty: the seed promises no page size (a
server may hand back fewer than ``count`` while more wait), so only an empty page says
the store is drained. One poller at a time is the caller's business (the beat task
wraps :func:`pull_reports` in a Redis lock).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from redis.exceptions import LockError

from providers.base import (
    Call,
    MissingCredentials,
    Provider,
    Reply,
    ReportPage,
    UnreadableReply,
)
from providers.http import Failure
from store.availability import probe_store, store_away
from tasks.journal import REPORT_PAGE, CallbackJournal
from tasks.runtime import Runtime, get_runtime
from worker.app import celery

log = logging.getLogger(__name__)

#: stop after this many pages in one run, so one poll never runs unbounded
MAX_PAGES = 100
POLL_LOCK = "nq:lock:poll-reports"
#: longer than MAX_PAGES pulls can take; a crashed poller frees the lock after it
POLL_LOCK_TTL = 600
#: pages a PostgreSQL store applies at once (:func:`_pull`)
PG_LANES = 2


def pull_reports(rt: Runtime) -> int:
    """Pull every waiting report of every provider that pulls; returns receipts stored.

    Never while the store is away: a page pulled is deleted on the provider's side, and
    only the store can journal it, so the store is asked first and its error raised
    (the worker logs that once per outage, worker/ready.py); the next poll pulls."""
    probe_store(rt.db)
    stored = 0
    for name, provider in rt.providers.items():
        if provider.pulls_reports:
            stored += _replay_journal(rt, name, provider)
            stored += _pull(rt, name, provider)
    return stored


class Pulled(NamedTuple):
    """A page pulled and journalled: its journal id, and its reading (None: unreadable,
    marked so in the journal)."""

    pull_id: int
    page: ReportPage | None


def _pull(rt: Runtime, name: str, provider: Provider) -> int:
    """Pull pages while they come back non-empty, each journalled before it is stored.

    A helper thread pulls each page, reads it and journals it (committed); store lanes
    store them. The next page is asked for as soon as this one is known to hold
    reports, so the round trip to the provider, the parse and the journal's commit of
    the next page overlap the storing of this one (``bench/reports.py``). The order that
    matters is kept within each page: pulled, journalled and committed, then stored. A
    page pulled while the one before is being stored is journalled then too, not after
    it: a store that fails leaves it in the journal for the next run
    (:func:`_replay_journal`), and the run raises once every page begun has ended.

    PostgreSQL stores :data:`PG_LANES` pages at once, each in its own transaction:
    most of a page's time is the server's (the statement, its index updates, the
    commit), which a second page's staging and statement overlap. Two pages that name
    one call are what two pullers storing at once already meet (the unique key makes
    the later insert wait and skip, and only the insert that won moves the row), and
    each page inserts its receipts in reference order, so two lanes never wait on each
    other in a circle. SQLite serialises its writers: one lane.
    """
    page_size = rt.settings.apispace_report_page
    lanes = 1 if rt.db.is_sqlite else PG_LANES
    stored = 0
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pull-{name}") as fetcher,
        ThreadPoolExecutor(max_workers=lanes, thread_name_prefix=f"store-{name}") as storers,
    ):
        try:
            call = provider.report_call(page_size)
        except MissingCredentials as exc:
            log.warning("%s reports not pulled: %s", name, exc)
            return 0
        pending: Future[Pulled | None] | None = fetcher.submit(_pull_one, rt, name, provider, call)
        storing: deque[Future[int]] = deque()
        pages = 0
        try:
            while pending is not None:
                pulled = pending.result()
                pending = None
                pages += 1
                if pulled is None:
                    break
                page = pulled.page
                if page is not None and page.size > 0 and pages < MAX_PAGES:
                    pending = fetcher.submit(
                        _pull_one, rt, name, provider, provider.report_call(page_size)
                    )
                if page is None:
                    continue
                while len(storing) >= lanes:
                    stored += storing.popleft().result()
                storing.append(storers.submit(_store, rt, name, pulled.pull_id, page))
            while storing:
                stored += storing.popleft().result()
        except BaseException:
            # a page already asked for is journalled (or said lost), a store begun ends
            for begun in [pending, *storing]:
                if begun is not None:
                    with contextlib.suppress(Exception):
                        begun.result()
            raise
    return stored


def _pull_one(rt: Runtime, name: str, provider: Provider, call: Call) -> Pulled | None:
    """One page pulled, read, then journalled and committed; None when the pull failed
    (said in the log).

    Read before it is journalled, so that the parse overlaps the storing of the page
    before: on SQLite the journal's insert waits for the write lock that storing holds,
    and a parse after it lay on the path from one page's store to the next (5 ms of a
    page's 45, ``bench/reports.py``). Nothing is stored from a reading before its body
    is committed: the page is handed over only after :func:`_journal` returned. A
    reading that fails in any way still journals the body first (``finally``)."""
    answer = rt.transport.perform(call)
    if isinstance(answer, Failure):
        _log_failure(name, answer)
        return None
    reading: ReportPage | UnreadableReply | None = None
    try:
        reading = _parse(provider, answer)
    finally:
        pull_id = _journal(rt, name, answer)
    if isinstance(reading, UnreadableReply):
        return Pulled(pull_id, _unreadable(rt, name, pull_id, answer, reading))
    return Pulled(pull_id, reading)


def _journal(rt: Runtime, name: str, answer: Reply) -> int:
    """Commit a pulled body raw before anything reads it; its journal id.

    A store that went away since the pull began cannot take it: the body goes to the
    callback journal in Redis (tasks/journal.py), which the API copies into this
    journal once the store is back, for the next poll to parse; then the error is
    raised (this run stops). A page neither can keep is gone (the provider deleted
    it): said loudly, then raised."""
    try:
        return rt.receipts.journal(name, answer.text())
    except Exception as error:
        if store_away(error) and _kept_in_redis(rt, name, answer):
            raise
        log.exception(
            "%s report page (%d bytes) pulled but not journalled: its reports are lost",
            name,
            len(answer.body),
        )
        raise


def _kept_in_redis(rt: Runtime, name: str, answer: Reply) -> bool:
    try:
        CallbackJournal(rt.redis).write(REPORT_PAGE + name, answer.text())
    except Exception:  # Redis away too: the caller says the page is lost
        return False
    log.warning("%s report page pulled as the store went away: kept in Redis", name)
    return True


def _log_failure(name: str, answer: Failure) -> None:
    if answer.sent:
        log.error(
            "%s report pull got no answer after it was sent (%s): "
            "that page may be lost on the provider's side",
            name,
            answer.code,
        )
    else:
        log.warning("%s report pull did not reach the provider (%s)", name, answer.code)


def _replay_journal(rt: Runtime, name: str, provider: Provider) -> int:
    """Bodies journalled by an earlier run that died before parsing them."""
    stored = 0
    for row in rt.receipts.unparsed_journal(name):
        page = _read(rt, name, provider, row.id, Reply(200, row.body.encode("utf-8")))
        if page is not None:
            stored += _store(rt, name, row.id, page)
    return stored


def _read(
    rt: Runtime, name: str, provider: Provider, pull_id: int, reply: Reply
) -> ReportPage | None:
    """Parse one journalled body; an unreadable one is marked so in the journal (and
    kept there) and gives None."""
    reading = _parse(provider, reply)
    if isinstance(reading, UnreadableReply):
        return _unreadable(rt, name, pull_id, reply, reading)
    return reading


def _parse(provider: Provider, reply: Reply) -> ReportPage | UnreadableReply:
    """The page a body holds, or why it holds none."""
    try:
        return provider.read_report(reply)
    except UnreadableReply as exc:
        return exc


def _unreadable(rt: Runtime, name: str, pull_id: int, reply: Reply, exc: UnreadableReply) -> None:
    """An unreadable page, said in the log and marked so in its journal row (kept)."""
    log.error("%s report pull %d is unreadable: %s (kept in the journal)", name, pull_id, exc)
    with rt.db.write() as conn:
        rt.receipts.mark_journal(
            conn,
            pull_id,
            reports=None,
            error=f"http:{reply.status} {exc}"[:255],
            now=time.time(),
        )


def _store(rt: Runtime, name: str, pull_id: int, page: ReportPage) -> int:
    """Store a parsed page's receipts and mark its journal row, in one transaction;
    returns the receipts on the page."""
    now = time.time()
    receipts = page.receipts
    error = f"skipped {page.skipped} unreadable report(s)" if page.skipped else None
    if error:
        log.warning("%s report pull %d: %s (kept in the journal)", name, pull_id, error)
    with rt.db.write() as conn:
        rt.receipts.store_page(
            conn, name, [(r.ref, r.delivered, r.code, r.message, r.detail) for r in receipts], now
        )
        rt.receipts.mark_journal(conn, pull_id, reports=len(receipts), error=error, now=now)
    return len(receipts)


# beat's, four or five a second: kept out of Flower's history (worker/beat.py)
@celery.task(name="notifyq.poll_reports", send_events=False)
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
