"""The notifications ledger: insert with idempotency, read, and guarded transitions.

A transition is a compare-and-set on what its caller read: the row changes only if it
is still in the status *and* at the version the change was decided from
(:class:`Expect`), and only if :data:`~store.status.ALLOWED_FROM` permits the
move at all. The table is the outer bound; ``expect`` is the guard. A copy of a task
that read ``queued`` a moment before another copy committed ``sending`` is refused,
even though ``sending → deferred`` is a permitted transition. Rows are read ``FOR
UPDATE`` (PostgreSQL) or under SQLite's single write lock first, so a batch of changes
costs three statements however many rows it touches, and the events record the true
previous status.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from observe.metrics import STALE_CHANGES
from providers.base import Leg
from scheduler.priority import DEFAULT as DEFAULT_PRIORITY
from scheduler.priority import Priority
from store.bulk import IN_LIST_LIMIT, among, insert_rows, tuples
from store.db import INSERT_PAGE, Store
from store.outbox import record_notification_events
from store.rows import NotificationRow
from store.schema import DEFAULT_OWNER, Event, Notification, table_of
from store.status import ALLOWED_FROM, WAITING, Status

log = logging.getLogger(__name__)

N = table_of(Notification)
E = table_of(Event)
EVENT_COLUMNS = ("notification_id", "at", "from_status", "to_status", "reason", "detail")


@dataclass(frozen=True, kw_only=True)
class Asked:
    """Who asks for a notification and what tells a repeat apart, the same from the
    caller's request to the stored row."""

    idempotency_key: str | None = None
    campaign_id: int | None = None
    #: the name of the API key that asks for it (store/keys.py); the operator's by default
    owner: str = DEFAULT_OWNER


@dataclass(frozen=True)
class NewNotification(Leg, Asked):
    """A validated request, number already in E.164."""

    to: str
    route: Sequence[Mapping[str, Any]] | None = None
    not_before: float | None = None
    priority: Priority = DEFAULT_PRIORITY


@dataclass(frozen=True)
class Enqueued:
    id: int
    status: Status
    #: False when the idempotency key named an earlier notification
    created: bool
    next_attempt_at: float | None = None
    #: the broker queue its dispatch message takes (worker/queues.py)
    priority: Priority = DEFAULT_PRIORITY


@dataclass(frozen=True)
class Expect:
    """What a change was decided from.

    ``statuses`` is the status read (or, for a decision that holds for several — "any
    waiting row of this campaign is cancelled" — those statuses); ``version``, when
    set, pins the very episode read: a row that went ``queued → sending → queued``
    is at another version, and a task that read the first ``queued`` must not act on
    the second.
    """

    statuses: frozenset[Status]
    version: int | None = None

    @classmethod
    def row(cls, row: Any) -> Expect:
        """Exactly what this row was when read: its status at its version."""
        return cls(frozenset({Status(row.status)}), int(row.version))

    @classmethod
    def any_of(cls, *statuses: Status) -> Expect:
        return cls(frozenset(statuses))

    @classmethod
    def sending(cls, version: int) -> Expect:
        """The ``sending`` episode this task started (the version its own change made)."""
        return cls(frozenset({Status.SENDING}), version)

    def admits(self, status: Status, version: int) -> bool:
        return status in self.statuses and (self.version is None or self.version == version)

    def __str__(self) -> str:
        statuses = ",".join(sorted(self.statuses))
        return statuses if self.version is None else f"{statuses}@v{self.version}"


@dataclass(frozen=True)
class Change:
    """One wanted transition, and what it was decided from (required: a change that
    does not say what it read can overwrite a concurrent one)."""

    id: int
    to: Status
    expect: Expect
    reason: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    detail: Mapping[str, Any] | None = None
    count_attempt: bool = False


@dataclass(frozen=True)
class Applied:
    id: int
    from_status: Status
    to: Status


class IllegalTransition(Exception):
    """Raised only by callers that demand a transition; the store itself logs and skips."""


class NotificationStore(Store):
    # -- writing new rows -------------------------------------------------------------

    def insert(
        self, drafts: Sequence[NewNotification], *, now: float | None = None
    ) -> list[Enqueued]:
        """Store drafts in one transaction; a known idempotency key returns the first row."""
        now = time.time() if now is None else now
        # up to a page of rows is one INSERT statement, atomic by itself: on PostgreSQL it
        # commits alone (no BEGIN/COMMIT round trips). The look-up of known keys before it
        # is a read either way: the unique key, not a transaction, is what stops a second
        # row, and a key stored meanwhile by another writer sends us round again below.
        connect = self.db.statements if len(drafts) <= INSERT_PAGE else self.db.write
        try:
            with connect() as conn:
                return self._insert(conn, drafts, now)
        except IntegrityError:
            # Another writer stored one of our keys between our look-up and our insert
            # (PostgreSQL only: SQLite writers are serialised). Once more, now it is seen.
            with connect() as conn:
                return self._insert(conn, drafts, now)

    def _insert(
        self, conn: Connection, drafts: Sequence[NewNotification], now: float
    ) -> list[Enqueued]:
        keys = [d.idempotency_key for d in drafts if d.idempotency_key]
        existing: dict[str, Row[Any]] = {}
        if keys:
            rows = conn.execute(
                select(N.c.idempotency_key, N.c.id, N.c.status, N.c.next_attempt_at).where(
                    N.c.idempotency_key.in_(keys)
                )
            )
            existing = {row.idempotency_key: row for row in rows}
        fresh = [d for d in drafts if not d.idempotency_key or d.idempotency_key not in existing]
        seen: set[str] = set()
        unique_fresh: list[NewNotification] = []
        for draft in fresh:  # one key twice in one batch: the first one wins
            if draft.idempotency_key:
                if draft.idempotency_key in seen:
                    continue
                seen.add(draft.idempotency_key)
            unique_fresh.append(draft)
        ids: list[int] = []
        if unique_fresh:
            result = conn.execute(
                insert(N).returning(N.c.id, sort_by_parameter_order=True),
                [_row(d, now) for d in unique_fresh],
            )
            ids = [row.id for row in result]
        made = dict(zip((id(d) for d in unique_fresh), ids, strict=True))
        by_key = {d.idempotency_key: made[id(d)] for d in unique_fresh if d.idempotency_key}
        out: list[Enqueued] = []
        for draft in drafts:
            if id(draft) in made:
                status = _initial_status(draft, now)
                nxt = draft.not_before if status is Status.DEFERRED else now
                out.append(Enqueued(made[id(draft)], status, True, nxt, draft.priority))
            elif draft.idempotency_key in existing:
                row = existing[draft.idempotency_key]
                out.append(Enqueued(row.id, Status(row.status), False, row.next_attempt_at))
            else:  # the key repeated inside this batch
                assert draft.idempotency_key is not None  # only a keyed draft is left out
                out.append(Enqueued(by_key[draft.idempotency_key], Status.QUEUED, False))
        return out

    # -- reading ----------------------------------------------------------------------

    def get(self, notification_id: int, *, owner: str | None = None) -> NotificationRow | None:
        """The row; with ``owner``, only if that key name made it (None, as for an id
        that does not exist, otherwise)."""
        query = select(N).where(N.c.id == notification_id)
        if owner is not None:
            query = query.where(N.c.owner == owner)
        with self.db.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else NotificationRow.from_row(row)

    def load(self, conn: Connection, ids: Iterable[int]) -> list[NotificationRow]:
        """The rows of ``ids`` that exist, by id."""
        query = select(N).where(N.c.id.in_(list(ids))).order_by(N.c.id)
        return [NotificationRow.from_row(row) for row in conn.execute(query)]

    def events(self, notification_id: int) -> list[Row[Any]]:
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(E).where(E.c.notification_id == notification_id).order_by(E.c.id)
                )
            )

    def count_by_status(self, ids: Iterable[int] | None = None) -> dict[str, int]:

        query = select(N.c.status, func.count()).group_by(N.c.status)
        if ids is not None:
            query = query.where(N.c.id.in_(list(ids)))
        with self.db.read() as conn:
            return {Status(status).value: count for status, count in tuples(conn.execute(query))}

    # -- transitions ------------------------------------------------------------------

    def transition(
        self, changes: Sequence[Change], *, now: float | None = None, conn: Connection | None = None
    ) -> list[Applied]:
        """Apply what the guards allow; log and skip the rest. Returns what was applied."""
        if not changes:
            return []
        now = time.time() if now is None else now
        if conn is not None:
            return self._transition(conn, changes, now)
        with self.db.write() as own:
            return self._transition(own, changes, now)

    def _transition(self, conn: Connection, changes: Sequence[Change], now: float) -> list[Applied]:
        """One strategy for every caller: lock and read the rows, decide each change in
        Python against the row as it stands, write each decided change as its own
        compare-and-set, and record one event per change.

        The rows are locked for the transaction (``FOR UPDATE`` on PostgreSQL, ``BEGIN
        IMMEDIATE`` on SQLite), so a decision cannot go stale between the read and the
        write; each UPDATE still says ``WHERE id = … AND status = … AND version = …`` —
        the very row the decision was made on — so the compare-and-set holds by itself,
        whatever the lock. Changes with the same columns go in one executemany, and a row
        changed twice in one batch is written in order (``_write``). Many rows moved
        alike with nothing to decide row by row (a report page's receipts) take
        :meth:`move_alike`, one set-based UPDATE, instead."""
        current = self._lock_rows(conn, {c.id for c in changes})
        writes = [w for w in (_decide(current, change, now) for change in changes) if w]
        _write(conn, writes)
        insert_rows(
            conn,
            E,
            EVENT_COLUMNS,
            [
                {
                    "notification_id": w.change.id,
                    "at": now,
                    "from_status": w.row.status,
                    "to_status": w.change.to,
                    "reason": w.change.reason,
                    "detail": dict(w.change.detail) if w.change.detail else None,
                }
                for w in writes
            ],
        )
        # the webhook events these changes make, committed with them or not at all
        record_notification_events(
            conn, [(w.change.id, w.change.to, w.row.version + 1) for w in writes], now
        )
        return [Applied(w.change.id, w.row.status, w.change.to) for w in writes]

    def _lock_rows(self, conn: Connection, ids: Iterable[int]) -> dict[int, _Current]:
        """The rows as they stand, locked until the transaction ends (in id order on
        PostgreSQL, so two batches over the same rows cannot deadlock)."""
        query = select(N.c.id, N.c.status, N.c.attempts, N.c.version).where(N.c.id.in_(sorted(ids)))
        if not self.db.is_sqlite:
            query = query.order_by(N.c.id).with_for_update()
        return {
            row.id: _Current(Status(row.status), row.attempts, row.version)
            for row in conn.execute(query).all()
        }

    def move_alike(
        self,
        conn: Connection,
        ids: Sequence[int],
        *,
        source: Status,
        to: Status,
        reason: str | None,
        details: Mapping[int, Mapping[str, Any]],
        now: float,
    ) -> list[Applied]:
        """Many rows from one status to another with the same reason: the compare-and-set
        is one ``UPDATE … WHERE id IN (…) AND status = source RETURNING id`` a chunk, and
        what it returns is what moved — no read before it, no row-by-row loop. A report
        page's thousand ``sent`` → ``delivered`` (``bench/reports.py``); anything else
        goes through :meth:`transition`. The rows end here (``next_attempt_at`` cleared:
        for a ``sent`` row it was the receipt deadline)."""
        if source not in ALLOWED_FROM[to]:
            raise IllegalTransition(f"{source} → {to}")
        moved: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), IN_LIST_LIMIT):
            moved += tuples(
                conn.execute(
                    update(N)
                    .where(
                        among(conn, N.c.id, ids[start : start + IN_LIST_LIMIT]),
                        unindexed(N.c.status) == source.value,
                    )
                    .values(
                        status=to.value,
                        reason=reason,
                        updated_at=now,
                        next_attempt_at=None,
                        version=N.c.version + 1,
                    )
                    .returning(N.c.id, N.c.version)
                )
            )
        if len(moved) < len(ids):
            log.warning(
                "%d of %d transitions to %s refused: no longer %s",
                len(ids) - len(moved),
                len(ids),
                to,
                source,
            )
        events = [(i, now, source.value, to.value, reason, details.get(i)) for i, _ in moved]
        insert_rows(conn, E, EVENT_COLUMNS, events)
        record_notification_events(conn, [(i, to, version) for i, version in moved], now)
        return [Applied(i, source, to) for i, _ in moved]

    # -- bookkeeping for the pump and the sweeper --------------------------------------

    def mark_published(self, ids: Sequence[int], *, now: float | None = None) -> None:
        if not ids:
            return
        now = time.time() if now is None else now
        with self.db.write() as conn:
            conn.execute(update(N).where(N.c.id.in_(list(ids))).values(published_at=now))

    def priorities(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        """Each row's ``(id, priority)``: what a publisher of bare ids (the pump, the
        sweeper) needs to put each on its class's queue."""
        out: list[tuple[int, str]] = []
        with self.db.read() as conn:
            for start in range(0, len(ids), IN_LIST_LIMIT):
                chunk = [int(i) for i in ids[start : start + IN_LIST_LIMIT]]
                query = select(N.c.id, N.c.priority).where(N.c.id.in_(chunk))
                out += [(row.id, row.priority) for row in conn.execute(query)]
        return out

    def stale_waiting(self, *, before: float, limit: int) -> list[int]:
        """Waiting rows due before ``before`` whose last hand-off is older than it too."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(N.c.id)
                .where(
                    N.c.status.in_([s.value for s in WAITING]),
                    N.c.next_attempt_at <= before,
                    or_(N.c.published_at.is_(None), N.c.published_at <= before),
                    N.c.campaign_id.is_(None) | N.c.published_at.is_not(None),
                )
                .order_by(N.c.next_attempt_at)
                .limit(limit)
            )
            return [row.id for row in rows]

    def unreceipted(self, *, now: float, limit: int) -> list[Row[Any]]:
        """Rows ``sent`` whose receipt deadline has passed (id, status, version).

        A ``sent`` row's ``next_attempt_at`` is that deadline (set with ``sent``), so the
        due index (status, next_attempt_at) finds them without reading every sent row."""
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(N.c.id, N.c.status, N.c.version)
                    .where(N.c.status == Status.SENT.value, N.c.next_attempt_at <= now)
                    .limit(limit)
                )
            )

    def stale_sending(self, *, before: float, limit: int) -> list[Row[Any]]:
        """Rows ``sending`` since before ``before`` (id, status, version: what a change
        that resolves them expects; priority: the queue a resend takes)."""
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(N.c.id, N.c.status, N.c.version, N.c.priority)
                    .where(N.c.status == Status.SENDING.value, N.c.updated_at <= before)
                    .limit(limit)
                )
            )


class _Current(NamedTuple):
    status: Status
    attempts: int
    version: int


class _Write(NamedTuple):
    change: Change
    #: the row as it stood when the change was decided
    row: _Current
    values: dict[str, Any]


def _decide(current: dict[int, _Current], change: Change, now: float) -> _Write | None:
    """The write a change makes to the row as it stands, or None when it may not: the
    row is gone, has moved on since the caller read it, or may not take that status.
    ``current`` is updated, so a second change of the same row in one batch is decided
    against the first."""
    row = current.get(change.id)
    if row is None:
        log.warning(
            "transition to %s refused: notification %s does not exist", change.to, change.id
        )
        return None
    if not change.expect.admits(row.status, row.version):
        # the row moved on since the caller read it: a duplicate task, a racing sweeper
        # or operator. Expected under at-least-once delivery, so quiet.
        STALE_CHANGES.labels(change.to.value).inc()
        log.debug(
            "transition to %s dropped: notification %s is %s@v%s, expected %s",
            change.to,
            change.id,
            row.status,
            row.version,
            change.expect,
        )
        return None
    if row.status not in ALLOWED_FROM[change.to]:
        log.warning(
            "transition refused: notification %s is %s, which may not become %s",
            change.id,
            row.status,
            change.to,
        )
        return None
    values = {"status": change.to.value, "reason": change.reason, "updated_at": now}
    values.update(change.values)
    attempts = row.attempts + 1 if change.count_attempt else row.attempts
    if change.count_attempt:
        values["attempts"] = attempts
    current[change.id] = _Current(change.to, attempts, row.version + 1)
    return _Write(change, row, values)


def _write(conn: Connection, writes: Sequence[_Write]) -> None:
    """Each write as a compare-and-set on the row it was decided on, bumping its version.

    Writes setting the same columns share one executemany. A row's second write in the
    batch goes in a second round, after every first write, so each row's writes land in
    the order they were decided (the second expects the version the first leaves)."""
    rounds: list[dict[tuple[str, ...], list[dict[str, Any]]]] = []
    seen: Counter[int] = Counter()
    for write in writes:
        turn = seen[write.change.id]
        seen[write.change.id] += 1
        if turn == len(rounds):
            rounds.append(defaultdict(list))
        rounds[turn][tuple(sorted(write.values))].append(_params(write))
    for groups in rounds:
        for columns, params in groups.items():
            conn.execute(_compare_and_set(columns), params)


def _compare_and_set(columns: Sequence[str]) -> Any:
    return (
        update(N)
        .where(
            and_(
                N.c.id == bindparam("b_id"),
                # the status is a filter, never an index's condition: planned without
                # statistics (a young store), ``status = 'queued'`` on the status
                # index looked as cheap as the primary key and read every queued row
                # for each write (578,000 index entries for 2,000 sends)
                unindexed(N.c.status) == bindparam("b_from"),
                N.c.version == bindparam("b_version"),
            )
        )
        .values(
            {column: bindparam(f"v_{column}") for column in columns} | {"version": N.c.version + 1}
        )
    )


def _params(write: _Write) -> dict[str, Any]:
    """One row's parameters for the compare-and-set UPDATE."""
    params = {f"v_{k}": v for k, v in write.values.items()}
    params.update(b_id=write.change.id, b_from=write.row.status.value, b_version=write.row.version)
    return params


def unindexed(column: Any) -> Any:
    """``column`` in a form no index can serve (the same value on any store).

    SQLite keeps no statistics, so for ``id IN (…) AND status = 'sent'`` it guesses
    that the status index finds fewer rows than the primary key and reads every
    ``sent`` row (hundreds of thousands, for a report page of a thousand). Wrapped, the
    status is only checked on the rows the ids find."""
    return func.coalesce(column, "")


def _initial_status(draft: NewNotification, now: float) -> Status:
    return Status.DEFERRED if draft.not_before and draft.not_before > now else Status.QUEUED


def _row(draft: NewNotification, now: float) -> dict[str, Any]:
    status = _initial_status(draft, now)
    return {
        "provider": draft.provider,
        "to": draft.to,
        "template": draft.template,
        "content": draft.content,
        "params": list(draft.params),
        "options": dict(draft.options),
        "route": [dict(leg) for leg in draft.route] if draft.route else None,
        "status": status,
        "reason": "scheduled" if status is Status.DEFERRED else None,
        "attempts": 0,
        "idempotency_key": draft.idempotency_key,
        "campaign_id": draft.campaign_id,
        "owner": draft.owner,
        "priority": draft.priority.value,
        "next_attempt_at": draft.not_before if status is Status.DEFERRED else now,
        "published_at": None if status is Status.DEFERRED or draft.campaign_id else now,
        "created_at": now,
        "updated_at": now,
    }
