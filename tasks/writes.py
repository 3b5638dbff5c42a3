"""Group commit for the dispatch tasks of one worker process: the ``sending`` and outcome
writes of tasks that run at the same moment share one transaction.

A worker runs up to 64 dispatch tasks at once. When messages carry one id each (the
HTTP API's small groups, another producer's single publishes, redeliveries), every task
opened two write transactions of its own — on SQLite each one a turn of the cross-process
``flock`` and a ``BEGIN IMMEDIATE``/``COMMIT``, on PostgreSQL a round trip and a WAL
flush each — serialised across the whole machine. Here a task that finds no write under
way in its process starts one at once (no timer, no added wait); tasks that want to write
meanwhile form the next group, led by the first of them when this one commits.

Each submitter's changes are still decided on their own: inside the shared transaction
every submitter gets its own ``NotificationStore.transition`` call, which reads the rows
under the write lock (as updated by the earlier submitters of the group: two copies of
one id in one group stay a compare-and-set, the second sees the first's version bump)
and returns exactly what *that* call applied — results are attributed by call, never
guessed from ids. Each change still carries its ``expect``. The receipts that wait for a
``sent`` row (``sent_refs``) are applied in the same call's turn.

If the shared transaction fails (a database error, a lock timeout), nothing of it was
committed, and each submitter's write is tried again in a transaction of its own, so one
submitter's failure is never another's; its own caller sees its own error (and
``_write_outcomes`` retries it, as before).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

from worker.store import Change, Database
from worker.store.notifications import Applied

if TYPE_CHECKING:
    from tasks.runtime import Runtime

log = logging.getLogger(__name__)

#: at most this many submitters in one transaction (each a task's few changes)
MAX_GROUP = 64


class _Write:
    __slots__ = ("answer", "changes", "done", "error", "lead", "now", "sent_refs")

    def __init__(
        self, changes: Sequence[Change], now: float, sent_refs: Sequence[tuple[str, str]]
    ) -> None:
        self.changes = changes
        self.now = now
        self.sent_refs = sent_refs
        self.done = threading.Event()
        self.lead = False
        self.answer: list[Applied] | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """One per database in a process: ``write(rt, changes, now, sent_refs)`` from any thread."""

    def __init__(self, max_group: int = MAX_GROUP) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Write] = []
        self._running = False
        self._max_group = max_group
        #: transactions committed and submitters served (the benches read them)
        self.transactions = 0
        self.submitters = 0

    def write(
        self,
        rt: Runtime,
        changes: Sequence[Change],
        now: float,
        sent_refs: Sequence[tuple[str, str]] = (),
    ) -> list[Applied]:
        item = _Write(changes, now, sent_refs)
        with self._lock:
            self._waiting.append(item)
            lead = not self._running
            self._running = True
        while True:
            if lead:
                self._lead(rt)
            item.done.wait()
            if item.lead and item.answer is None and item.error is None:
                item.lead = False  # woken to lead the next group, not with an answer
                item.done.clear()
                lead = True
                continue
            break
        if item.error is not None:
            raise item.error
        assert item.answer is not None
        return item.answer

    def _lead(self, rt: Runtime) -> None:
        with self._lock:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
        try:
            self._commit(rt, group)
        finally:
            with self._lock:
                if self._waiting:
                    nxt = self._waiting[0]
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._running = False

    def _commit(self, rt: Runtime, group: list[_Write]) -> None:
        try:
            answers = []
            with rt.db.write() as conn:
                for item in group:
                    applied = rt.notifications.transition(item.changes, now=item.now, conn=conn)
                    if item.sent_refs:
                        applied += rt.receipts.apply(conn, list(item.sent_refs), item.now)
                    answers.append(applied)
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
                group[0].done.set()
                return
            log.warning(
                "a group of %d dispatch writes failed (%s); each is tried on its own",
                len(group),
                type(exc).__name__,
            )
            for item in group:
                self._commit(rt, [item])
            return
        self.transactions += 1
        self.submitters += len(group)
        for item, applied in zip(group, answers, strict=True):
            item.answer = applied
            item.done.set()


_groups: weakref.WeakKeyDictionary[Database, GroupCommit] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def group_for(db: Database) -> GroupCommit:
    with _groups_lock:
        group = _groups.get(db)
        if group is None:
            group = _groups[db] = GroupCommit()
        return group


def write(
    rt: Runtime, changes: Sequence[Change], now: float, sent_refs: Sequence[tuple[str, str]] = ()
) -> list[Applied]:
    """Commit ``changes`` (and the receipts for ``sent_refs``) in the process's next group."""
    return group_for(rt.db).write(rt, changes, now, sent_refs)
