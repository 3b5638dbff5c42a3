"""The ledger's tables, as typed SQLAlchemy 2 models.

Times are epoch seconds (UTC) in floating point: they compare the same on SQLite and
PostgreSQL, and they are the same numbers Redis uses as sorted-set scores and in the
cap scripts, so no conversion sits between the ledger and the scheduler.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scheduler.priority import DEFAULT as DEFAULT_PRIORITY
from store.status import Status

#: who owns what was made before keys had names, and what NOTIFYQ_API_KEYS keys and the
#: command line make (store/keys.py says why one name serves both)
DEFAULT_OWNER = "admin"
#: a key's name as rows record their owner
OWNER_LENGTH = 48

#: BIGINT on PostgreSQL; on SQLite an INTEGER PRIMARY KEY, the rowid itself.
Id = BigInteger().with_variant(Integer(), "sqlite")

StatusColumn = Enum(
    Status,
    native_enum=False,
    create_constraint=False,
    length=16,
    values_callable=lambda enum: [member.value for member in enum],
    validate_strings=True,
)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        float: Double,
    }


def table_of(model: type[Base]) -> Table:
    """A model's table, as the Core statements (``insert``, ``update``, ``COPY``) take it:
    the stores write with Core, whole batches at a time."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class Campaign(Base):
    """A reminder campaign: many notifications released to the workers as they keep up.

    Its notifications are ordinary rows (``campaign_id`` set) that start unreleased
    (``published_at`` is NULL); the fan-out releases them in chunks. A recurring
    (cron) campaign keeps its recipients in ``campaign_recipients`` and materialises a
    run of notifications from them at each occurrence.
    """

    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_owner", "owner", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    #: the name of the API key that made it (store/keys.py); only that name and admin
    #: keys see it
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH), server_default=DEFAULT_OWNER)
    #: importing → scheduled → running → completed; paused, cancelled beside them
    status: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    route: Mapped[list[Any] | None] = mapped_column(JSON)
    template: Mapped[str | None] = mapped_column(String(128))
    content: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: this campaign's own throughput cap (limits notation), beside the provider's caps
    rate: Mapped[str | None] = mapped_column(String(32))
    cron: Mapped[str | None] = mapped_column(String(64))
    #: the next moment to start (one-off ``--at``, or the cron's next occurrence)
    next_run_at: Mapped[float | None]
    started_at: Mapped[float | None]
    runs: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    #: the first rejected rows: [{row, field, message}]
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[float]
    updated_at: Mapped[float]


class CampaignRecipient(Base):
    """A recurring campaign's recipient, kept to materialise each run."""

    __tablename__ = "campaign_recipients"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), index=True
    )
    row: Mapped[int] = mapped_column(Integer)
    to: Mapped[str] = mapped_column(String(20))
    content: Mapped[str | None] = mapped_column(Text)
    params: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Notification(Base):
    """One notification to one number: the ledger row every status change is written to."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_due", "status", "next_attempt_at"),
        Index("ix_notifications_ref", "provider", "provider_ref"),
        Index("ix_notifications_campaign", "campaign_id", "status", "published_at"),
        #: a number's recent calls (store/calls.py): the caps' floor
        Index("ix_notifications_to", "to"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    #: E.164, so every spelling of one number shares its caps
    to: Mapped[str] = mapped_column(String(20))
    template: Mapped[str | None] = mapped_column(String(128))
    content: Mapped[str | None] = mapped_column(Text)
    params: Mapped[list[Any]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the fail-over legs not yet tried: [{provider, template, content, params, options}]
    route: Mapped[list[Any] | None] = mapped_column(JSON)
    status: Mapped[Status] = mapped_column(StatusColumn)
    reason: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: +1 on every status change: what a compare-and-set expects, so a task that read
    #: ``queued`` cannot act on a row that has been ``sending`` and ``queued`` again since
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    provider_ref: Mapped[str | None] = mapped_column(String(64))
    provider_code: Mapped[str | None] = mapped_column(String(32))
    #: its content, params and route carry a secret (a verification code): erased in the
    #: transaction that makes its send final (tasks/outcomes.py), so the ledger keeps
    #: nothing a reader could replay
    secret: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    #: the name of the API key that made it (store/keys.py); only that name and admin
    #: keys see it
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH), server_default=DEFAULT_OWNER)
    #: urgent, normal or bulk (scheduler/priority.py): its broker queue, its share of a
    #: worker's calls and of a provider's rate
    priority: Mapped[str] = mapped_column(String(8), server_default=DEFAULT_PRIORITY.value)
    #: not before this moment (a cap, a window, a backoff or the caller's not_before)
    next_attempt_at: Mapped[float | None]
    #: when a dispatch task for this row was last published (the sweeper's clue)
    published_at: Mapped[float | None]
    created_at: Mapped[float]
    updated_at: Mapped[float]


class Event(Base):
    """One status change, written in the same transaction as the change itself."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[float]
    from_status: Mapped[Status | None] = mapped_column(StatusColumn)
    to_status: Mapped[Status] = mapped_column(StatusColumn)
    reason: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Receipt(Base):
    """A delivery receipt, callback or report, kept even before its notification is known."""

    __tablename__ = "receipts"
    __table_args__ = (
        UniqueConstraint("provider", "provider_ref", name="uq_receipts_ref"),
        Index("ix_receipts_unmatched", "applied_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref: Mapped[str] = mapped_column(String(64))
    delivered: Mapped[bool] = mapped_column(Boolean)
    code: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[float]
    notification_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite")
    )
    applied_at: Mapped[float | None]


class ReportPull(Base):
    """The raw body of one pull of a pull-and-delete report endpoint, committed before parsing."""

    __tablename__ = "report_pulls"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    pulled_at: Mapped[float]
    body: Mapped[str] = mapped_column(Text)
    reports: Mapped[int | None] = mapped_column(Integer)
    parsed_at: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(String(255))


class ProviderTemplate(Base):
    """A template filed with a provider (ihuyi AddTemplate) and its audit state."""

    __tablename__ = "provider_templates"
    __table_args__ = (UniqueConstraint("provider", "template_id", name="uq_provider_template"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    template_id: Mapped[str] = mapped_column(String(64))
    content: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[float]


class Verification(Base):
    """One verification code sent to one number: only its HMAC is kept (never the code).

    ``status``: ``pending`` until checked right (``approved``), out of attempts
    (``too_many_attempts``), past ``expires_at`` (``expired``) or replaced by a newer
    code for the same number and purpose (``cancelled``). Every change is a
    compare-and-set on ``version`` (store/verifications.py)."""

    __tablename__ = "verifications"
    __table_args__ = (Index("ix_verifications_number", "to", "purpose", "status"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    #: E.164
    to: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(64))
    #: the name of the API key that made it (store/keys.py); only that name and admin
    #: keys see it
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH), server_default=DEFAULT_OWNER)
    channel: Mapped[str] = mapped_column(String(8))
    provider: Mapped[str] = mapped_column(String(32))
    #: a random salt and HMAC-SHA256(NOTIFYQ_VERIFY_SECRET, salt:code), hex
    salt: Mapped[str] = mapped_column(String(32))
    code_hmac: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: the notification that carries the code, and the later one of another channel
    #: (sent only if the code is still unchecked by then)
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="SET NULL")
    )
    fallback_id: Mapped[int | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="SET NULL")
    )
    expires_at: Mapped[float]
    created_at: Mapped[float]
    updated_at: Mapped[float]


class Suppression(Base):
    """A number that must not be called: by one provider (it reported the number
    blacklisted, vacant or malformed) or by any (``provider`` = ``*``: an opt-out, or a
    learnt one under ``NOTIFYQ_SUPPRESS_SCOPE=all``)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("to", "provider", name="uq_suppressions_number"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    #: E.164
    to: Mapped[str] = mapped_column(String(20))
    #: a provider name, or ``*`` for every provider
    provider: Mapped[str] = mapped_column(String(32))
    #: the why of ``suppressed:<why>``: blacklisted, vacant, malformed, opt-out, …
    reason: Mapped[str] = mapped_column(String(64))
    #: who said so: ``ihuyi:4030``, ``api``, ``cli``
    source: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float]


class ApiKey(Base):
    """An API key made with ``notifyq keys create``: its name, what it may do and its
    limits. Only a SHA-256 digest of the key is kept, never the key. A revoked key keeps
    its row (``revoked_at``), so what it made still names it; a name has at most one key
    that is not revoked."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index(
            "uq_api_keys_live_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(OWNER_LENGTH))
    #: SHA-256 of the whole key, hex
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    #: comma-separated: send, read, admin
    scopes: Mapped[str] = mapped_column(String(32))
    #: requests a window, ``limits`` notation (``100/second``); none: unlimited
    rate: Mapped[str | None] = mapped_column(String(64))
    #: notifications a day (midnight to midnight in NOTIFYQ_TIMEZONE); none: unlimited
    daily_quota: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[float]
    #: written coarsely (at most about once a minute a key and API process)
    last_used_at: Mapped[float | None]
    revoked_at: Mapped[float | None]


class WebhookEndpoint(Base):
    """A URL an API key asked to be told of status changes at, and the secret its
    messages are signed with (kept as it is: signing needs it). While a secret is
    rotated the one it replaces signs too, until ``previous_until``."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_owner", "owner", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    #: the name of the API key that made it: only that key's events reach it
    owner: Mapped[str] = mapped_column(String(OWNER_LENGTH))
    url: Mapped[str] = mapped_column(String(2048))
    #: the event types it wants; None: every one
    events: Mapped[list[Any] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_until: Mapped[float | None]
    created_at: Mapped[float]
    #: since when every attempt has failed (None: the last one succeeded)
    failing_since: Mapped[float | None]
    #: set when it failed everything for NOTIFYQ_WEBHOOK_DISABLE_AFTER: no new events
    disabled_at: Mapped[float | None]


class WebhookDelivery(Base):
    """The outbox: one event for one endpoint, written in the transaction of the change
    it reports, its body fixed then, so every attempt sends the same bytes under the same
    ``message_id``. ``pending`` until a 2xx (``delivered``) or out of retries (``failed``:
    replayable)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    #: ``webhook-id``: the same on every attempt, so a receiver can drop a repeat
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    #: the notification, verification or campaign it is about
    subject_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: when it is next due (an attempt in flight pushes it a lease ahead)
    next_attempt_at: Mapped[float | None]
    created_at: Mapped[float]
    last_attempt_at: Mapped[float | None]
    delivered_at: Mapped[float | None]


class WebhookAttempt(Base):
    """One try of one delivery: when, how long, and what the receiver answered."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[float]
    seconds: Mapped[float]
    #: the HTTP status, or None when no answer came (refused, timed out, unsafe address)
    status_code: Mapped[int | None] = mapped_column(Integer)
    #: the start of the answer's body, or why there was none
    answer: Mapped[str | None] = mapped_column(String(512))
    ok: Mapped[bool] = mapped_column(Boolean)
