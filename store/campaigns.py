"""Campaigns in the ledger: their rows, bulk-loaded; their release in chunks; their control.

Bulk loading goes through ``store.bulk.insert_rows`` with the JSON already encoded —
``COPY`` on PostgreSQL, the driver's ``executemany`` on SQLite: a million rows must
load in seconds, and the ORM's per-row type processing is most of the cost of a naive
insert. Everything else here is plain SQLAlchemy Core.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from sqlalchemy import func, insert, literal, select, update

from scheduler.priority import Priority
from store.bulk import Serialized, insert_shared, tuples
from store.db import Database
from store.notifications import Change, Expect, NotificationStore
from store.outbox import record_event
from store.schema import DEFAULT_OWNER, Campaign, CampaignRecipient, Notification, table_of
from store.status import WAITING, Status

C = table_of(Campaign)
R = table_of(CampaignRecipient)
N = table_of(Notification)

#: campaign statuses
IMPORTING, SCHEDULED, RUNNING, PAUSED, CANCELLED, COMPLETED = (
    "importing",
    "scheduled",
    "running",
    "paused",
    "cancelled",
    "completed",
)
MAX_KEPT_ERRORS = 100
#: passes over a cancelled campaign's waiting rows before giving up on racing dispatches
MAX_CANCEL_PASSES = 20

log = logging.getLogger(__name__)

#: chunks of one import stored at once on PostgreSQL (bench/campaign.py chose it)
PARALLEL_WRITES = 4

#: the notification columns a :class:`CampaignRow`'s items fill (its row number left out);
#: every other column's value the campaign's rows share (``store.bulk.insert_shared``)
ROW_FIELDS = (None, "to", "content", "params")

#: the columns of a campaign row as a run of a recurring campaign copies them: the row's
#: own values first, then those every row of the campaign shares
ROW_COLUMNS = (
    "to",
    "content",
    "params",
    "provider",
    "template",
    "options",
    "route",
    "status",
    "attempts",
    "campaign_id",
    "owner",
    "priority",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


#: a campaign row's values as :class:`CampaignRow` holds them: an import makes its
#: chunks of plain tuples, a million of them, with no call per row
RowValues = tuple[int, str, str | None, tuple[str, ...]]


class CampaignRow(NamedTuple):
    """One accepted CSV row: the number in E.164, its own text and variables (a tuple,
    :data:`RowValues` with names)."""

    row: int
    to: str
    content: str | None
    params: tuple[str, ...]


@dataclass(frozen=True)
class CampaignSummary:
    """A campaign as a list shows it: what it is and where it stands, not its counts."""

    id: int
    name: str
    status: str
    provider: str
    owner: str
    total: int
    rejected: int
    cron: str | None
    next_run_at: float | None
    created_at: float


SUMMARY_COLUMNS = tuple(f.name for f in fields(CampaignSummary))


def _completed_event(conn: Any, campaign_id: int, now: float) -> None:
    """``campaign.completed`` for the campaign's owner's endpoints, in the transaction
    that completes it: how many rows it had, and how many of them ended how."""
    row = conn.execute(
        select(C.c.owner, C.c.name, C.c.total, C.c.rejected, C.c.runs).where(C.c.id == campaign_id)
    ).one()
    ended = dict(
        conn.execute(
            select(N.c.status, func.count())
            .where(N.c.campaign_id == campaign_id)
            .group_by(N.c.status)
        ).all()
    )
    data = {
        "status": COMPLETED,
        "name": row.name,
        "total": row.total,
        "rejected": row.rejected,
        "runs": row.runs,
        "statuses": {str(getattr(k, "value", k)): v for k, v in sorted(ended.items())},
    }
    record_event(
        conn, owner=row.owner, event_type="campaign.completed", subject_id=campaign_id,
        data=data, now=now,
    )  # fmt: skip


class CampaignStore:
    def __init__(self, db: Database, notifications: NotificationStore) -> None:
        self.db = db
        self.notifications = notifications

    @property
    def parallel_writes(self) -> int:
        """Chunks an import may store at once: PostgreSQL runs each chunk's COPY on a
        backend of its own (its indexes, constraint checks and commit overlap); SQLite
        takes one writer at a time, so a second would only wait."""
        return 1 if self.db.is_sqlite else PARALLEL_WRITES

    # -- creating ----------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        provider: str,
        options: dict[str, Any],
        template: str | None = None,
        content: str | None = None,
        route: list[Any] | None = None,
        rate: str | None = None,
        cron: str | None = None,
        next_run_at: float | None = None,
        owner: str = DEFAULT_OWNER,
    ) -> int:
        """A campaign, ``importing`` until its rows are in; what it is not given it has
        not (no template or text of its own, no fail-over route, no pace, no repeats, no
        start time)."""
        now = time.time()
        with self.db.write() as conn:
            return conn.execute(
                insert(C).returning(C.c.id),
                {
                    "name": name,
                    "owner": owner,
                    "status": IMPORTING,
                    "provider": provider,
                    "route": route,
                    "template": template,
                    "content": content,
                    "options": options,
                    "rate": rate,
                    "cron": cron,
                    "next_run_at": next_run_at,
                    "started_at": None,
                    "runs": 0,
                    "total": 0,
                    "rejected": 0,
                    "errors": [],
                    "created_at": now,
                    "updated_at": now,
                },
            ).scalar_one()

    def add_notifications(
        self, campaign: Any, rows: Sequence[RowValues], not_before: float
    ) -> None:
        """Store accepted rows as unreleased notifications, in one transaction."""
        if not rows:
            return
        now = time.time()
        options = Serialized(json.dumps(campaign.options or {}, ensure_ascii=False))
        route = (
            Serialized(json.dumps(campaign.route, ensure_ascii=False)) if campaign.route else None
        )
        shared = {
            "provider": campaign.provider,
            "template": campaign.template,
            "options": options,
            "route": route,
            "status": Status.QUEUED.value,
            "attempts": 0,
            "campaign_id": campaign.id,
            "owner": campaign.owner,
            "priority": Priority.BULK.value,  # a campaign's rows are always bulk
            "next_attempt_at": not_before,
            "created_at": now,
            "updated_at": now,
        }
        with self.db.write() as conn:
            insert_shared(conn, N, ROW_FIELDS, rows, shared)

    def add_recipients(self, campaign_id: int, rows: Sequence[RowValues]) -> None:
        if not rows:
            return
        with self.db.write() as conn:
            insert_shared(
                conn, R, ("row", "to", "content", "params"), rows, {"campaign_id": campaign_id}
            )

    def start_run(self, campaign: Any, now: float, next_run_at: float | None) -> int | None:
        """Start a recurring campaign's occurrence exactly once: ``scheduled → running``
        and one notification per kept recipient, in ONE transaction, guarded by the run
        count that was read. Two fan-outs at once, or a retry after a crash between the
        steps, find the run started (or not started at all) — never two runs' rows.
        Returns how many notifications were made, or None if another fan-out won."""
        with self.db.write() as conn:
            claimed = conn.execute(
                update(C)
                .where(C.c.id == campaign.id, C.c.status == SCHEDULED, C.c.runs == campaign.runs)
                .values(
                    status=RUNNING,
                    started_at=now,
                    next_run_at=next_run_at,
                    runs=campaign.runs + 1,
                    updated_at=now,
                )
            ).rowcount
            if claimed != 1:
                return None
            source = (
                select(
                    R.c.to,
                    R.c.content,
                    R.c.params,
                    C.c.provider,
                    C.c.template,
                    C.c.options,
                    C.c.route,
                    literal(Status.QUEUED.value),
                    literal(0),
                    C.c.id,
                    C.c.owner,
                    literal(Priority.BULK.value),
                    literal(now),
                    literal(now),
                    literal(now),
                )
                .join(C, C.c.id == R.c.campaign_id)
                .where(R.c.campaign_id == campaign.id)
                .order_by(R.c.row)
            )
            conn.execute(insert(N).from_select([N.c[name] for name in ROW_COLUMNS], source))
            # counted, not the INSERT's rowcount: psycopg reports -1 for INSERT … SELECT
            return conn.execute(
                select(func.count()).where(R.c.campaign_id == campaign.id)
            ).scalar_one()

    def finish_import(
        self,
        campaign_id: int,
        *,
        total: int,
        rejected: int,
        errors: list[dict[str, Any]],
        status: str,
    ) -> None:
        now = time.time()
        with self.db.write() as conn:
            conn.execute(
                update(C)
                .where(C.c.id == campaign_id)
                .values(
                    total=total,
                    rejected=rejected,
                    errors=errors[:MAX_KEPT_ERRORS],
                    status=status,
                    updated_at=now,
                )
            )
            if status == COMPLETED:  # nothing to send: complete as it is imported
                _completed_event(conn, campaign_id, now)

    # -- reading -----------------------------------------------------------------------

    def get(self, campaign_id: int, *, owner: str | None = None) -> Any:
        """The campaign; with ``owner``, only if that key name made it."""
        query = select(C).where(C.c.id == campaign_id)
        if owner is not None:
            query = query.where(C.c.owner == owner)
        with self.db.read() as conn:
            return conn.execute(query).first()

    def page(self, *, owner: str | None, before: int | None, limit: int) -> list[CampaignSummary]:
        """Campaigns newest first, below id ``before``; with ``owner``, that key name's
        only (an index on owner and id serves it)."""
        query = select(*(C.c[name] for name in SUMMARY_COLUMNS)).order_by(C.c.id.desc())
        if owner is not None:
            query = query.where(C.c.owner == owner)
        if before is not None:
            query = query.where(C.c.id < before)
        with self.db.read() as conn:
            return [CampaignSummary(*row) for row in tuples(conn.execute(query.limit(limit)))]

    def statuses(self, ids: Iterable[int]) -> dict[int, str]:
        with self.db.read() as conn:
            return dict(conn.execute(select(C.c.id, C.c.status).where(C.c.id.in_(list(ids)))).all())

    def states(self, ids: Iterable[int]) -> dict[int, tuple[str, str | None]]:
        with self.db.read() as conn:
            rows = conn.execute(select(C.c.id, C.c.status, C.c.rate).where(C.c.id.in_(list(ids))))
            return {row.id: (row.status, row.rate) for row in rows}

    def has_open(self, campaign_id: int) -> bool:
        """Is any of its notifications still waiting or being sent? (an index probe)"""
        open_statuses = [s.value for s in (*WAITING, Status.SENDING)]
        with self.db.read() as conn:
            return (
                conn.execute(
                    select(N.c.id)
                    .where(N.c.campaign_id == campaign_id, N.c.status.in_(open_statuses))
                    .limit(1)
                ).first()
                is not None
            )

    def with_status(self, *statuses: str) -> list[Any]:
        with self.db.read() as conn:
            return list(conn.execute(select(C).where(C.c.status.in_(statuses)).order_by(C.c.id)))

    def counts(self, campaign_id: int) -> dict[str, int]:
        with self.db.read() as conn:
            rows = tuples(
                conn.execute(
                    select(N.c.status, func.count())
                    .where(N.c.campaign_id == campaign_id)
                    .group_by(N.c.status)
                )
            )
            return {getattr(s, "value", str(s)): n for s, n in rows}

    def unreleased(self, campaign_id: int) -> int:
        with self.db.read() as conn:
            return conn.execute(
                select(func.count()).where(
                    N.c.campaign_id == campaign_id,
                    N.c.status == Status.QUEUED.value,
                    N.c.published_at.is_(None),
                )
            ).scalar_one()

    # -- releasing ---------------------------------------------------------------------

    def release(self, campaign_id: int, limit: int, now: float) -> list[int]:
        """Claim the next ``limit`` unreleased rows (compare-and-set on published_at)."""
        with self.db.write() as conn:
            ids = [
                row.id
                for row in conn.execute(
                    select(N.c.id)
                    .where(
                        N.c.campaign_id == campaign_id,
                        N.c.status == Status.QUEUED.value,
                        N.c.published_at.is_(None),
                    )
                    .order_by(N.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ]
            if ids:
                conn.execute(
                    update(N)
                    .where(N.c.id.in_(ids), N.c.published_at.is_(None))
                    .values(published_at=now, next_attempt_at=now)
                )
            return ids

    def unrelease(self, campaign_id: int) -> int:
        """Hand released-but-not-started rows back (a pause): their broker messages will
        find the campaign paused and do nothing; the fan-out releases them on resume."""
        with self.db.write() as conn:
            result = conn.execute(
                update(N)
                .where(N.c.campaign_id == campaign_id, N.c.status == Status.QUEUED.value)
                .values(published_at=None)
            )
            return result.rowcount or 0

    # -- control -----------------------------------------------------------------------

    def set_status(
        self,
        campaign_id: int,
        status: str,
        *,
        expect: Sequence[str] | None = None,
        owner: str | None = None,
        **values: Any,
    ) -> bool:
        """Compare-and-set on the status (``expect``); with ``owner``, only that key
        name's campaign changes."""
        now = time.time()
        with self.db.write() as conn:
            stmt = update(C).where(C.c.id == campaign_id)
            if expect is not None:
                stmt = stmt.where(C.c.status.in_(list(expect)))
            if owner is not None:
                stmt = stmt.where(C.c.owner == owner)
            changed = bool(
                conn.execute(stmt.values(status=status, updated_at=now, **values)).rowcount
            )
            if changed and status == COMPLETED:
                _completed_event(conn, campaign_id, now)
            return changed

    def cancel_rows(self, campaign_id: int, chunk: int = 5000, *, by: str | None = None) -> int:
        """Every row not yet handed to a provider → cancelled, each with its event (whose
        detail names ``by``, the key or the command line that cancelled, when given).

        Each change expects the row as read (a dispatch that took it meanwhile wins:
        it is ``sending`` and no longer the campaign's to cancel); rows that moved from
        one waiting status to another are read again on the next pass."""
        cancelled = 0
        waiting = [s.value for s in WAITING]
        for _ in range(MAX_CANCEL_PASSES):
            with self.db.read() as conn:
                rows = list(
                    conn.execute(
                        select(N.c.id, N.c.status, N.c.version)
                        .where(N.c.campaign_id == campaign_id, N.c.status.in_(waiting))
                        .limit(chunk)
                    )
                )
            if not rows:
                return cancelled
            applied = self.notifications.transition(
                [
                    Change(
                        row.id,
                        Status.CANCELLED,
                        expect=Expect.row(row),
                        reason="campaign:cancelled",
                        values={"next_attempt_at": None},
                        detail={"by": by} if by else None,
                    )
                    for row in rows
                ]
            )
            cancelled += len(applied)
        log.warning(
            "campaign %s: rows still waiting after cancelling (dispatch racing)", campaign_id
        )
        return cancelled
