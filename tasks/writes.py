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
``_write_outcomes`` retries it).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

from store import Change, Database
from store.group_commit import Groups
from store.notifications import Applied

if TYPE_CHECKING:
    from tasks.runtime import Runtime

log = logging.getLogger(__name__)

#: at most this many submitters in one transaction (each a task's few changes)
MAX_GROUP = 64


#: one task's write: its changes, their moment, the receipts waiting for its ``sent`` rows
_Payload = tuple[Sequence[Change], float, Sequence[tuple[str, str]]]


def _commit(rt: Runtime, group: list[_Payload]) -> list[list[Applied]]:
    """One transaction; in it, each submitter's own transition call (its own
    compare-and-set, its own result)."""
    answers = []
    with rt.db.write() as conn:
        for changes, now, sent_refs in group:
            applied = rt.notifications.transition(changes, now=now, conn=conn)
            if sent_refs:
                applied += rt.receipts.apply(conn, list(sent_refs), now)
            answers.append(applied)
    return answers


GroupCommit = Groups[_Payload, list[Applied]]
#: a database's two queues: bulk work's, and urgent and normal work's
_groups: weakref.WeakKeyDictionary[Database, tuple[GroupCommit, GroupCommit]] = (
    weakref.WeakKeyDictionary()
)
_groups_lock = threading.Lock()


def group_for(db: Database, *, bulk: bool = False) -> GroupCommit:
    """The process's queue of writes to ``db`` for bulk work, or for the rest.

    Two queues, so a code's ``sending`` write never waits for a group of campaign writes
    to form and commit behind the one under way: a full bulk group is 64 tasks' rows, and
    waiting out two of them was most of a code's time in its worker during a campaign.
    On PostgreSQL the two commit side by side; on SQLite they take turns on the write
    lock, a turn each."""
    with _groups_lock:
        lanes = _groups.get(db)
        if lanes is None:
            lanes = _groups[db] = (
                Groups(_commit, what="dispatch writes", max_group=MAX_GROUP),
                Groups(_commit, what="bulk dispatch writes", max_group=MAX_GROUP),
            )
        return lanes[bulk]


def write(
    rt: Runtime,
    changes: Sequence[Change],
    now: float,
    sent_refs: Sequence[tuple[str, str]] = (),
    *,
    bulk: bool = False,
) -> list[Applied]:
    """Commit ``changes`` (and the receipts for ``sent_refs``) in the process's next group
    of bulk writes, or of the others."""
    return group_for(rt.db, bulk=bulk).submit(rt, (changes, now, sent_refs))
