"""Verification codes end to end: create, send, check — the shape of Twilio
Verify — with the code itself never stored, logged or shown.

``create`` draws a code from :mod:`secrets`, keeps only a random salt and
HMAC-SHA256(``NOTIFYQ_VERIFY_SECRET``, salt:code), and sends the code as an ordinary
notification — APISpace SMS for ``sms``, ihuyi or jumdata for ``voice`` — so it passes
the same caps, windows, retries and fail-over routes as any other. That notification
is marked ``secret``: its content and params hold the code only until its send is
final (the final status write clears them, ``tasks/outcomes.py``), and the task that
sends it carries its id only.

``check`` compares HMACs in constant time under the row's write lock, so two checks
racing with the right code approve it once. Answers: ``approved``; ``denied`` (with the
attempts left); ``expired`` (past its time, already used, or replaced by a newer code);
``too_many_attempts``.

Per number: at most ``NOTIFYQ_VERIFY_CAPS`` new codes (default one a minute, five an
hour) on the same atomic cap script the providers' caps use, on Redis's clock; beyond
them :class:`TooManyRequests` says when to try again (HTTP 429, ``Retry-After``). A new
code for the same number and purpose cancels the old one (and its unsent notification).

Resend by channel: ``voice_after=N`` with ``sms`` also enqueues a voice call of the same
code ``not_before`` N seconds from now — a row in the deferred set, not a Celery
countdown (a Redis broker delivers again an ETA task that waits past its visibility
timeout) — cancelled the moment the code is approved.

Without ``NOTIFYQ_VERIFY_SECRET`` nothing is created (:class:`VerificationsDisabled`):
a key made up per process would fail every check made on another host.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from observe.metrics import VERIFICATION_CHECKS, VERIFICATION_LIMITED, VERIFICATIONS
from providers.base import FieldError, InvalidRequest, mask
from scheduler.limits import parse_caps
from scheduler.priority import Priority
from store import Change, Enqueued, Expect, NewNotification, Status
from store.keys import CLI_ACTOR
from store.schema import DEFAULT_OWNER, Notification
from store.status import WAITING
from store.verifications import (
    APPROVED,
    CANCELLED,
    ENDED,
    ERASED,
    EXPIRED,
    PENDING,
    TOO_MANY_ATTEMPTS,
    NewVerification,
    VerificationStore,
    erase_finished,
)
from tasks.enqueue import hand_off
from tasks.requests import RouteLeg, SendRequest, validate
from tasks.runtime import Runtime, get_runtime
from tasks.views import iso

log = logging.getLogger(__name__)

#: the ways a code goes; which providers carry each is theirs to say (``code_channel``)
CHANNELS = ("sms", "voice")
#: the caps' namespace for "new codes to this number" (scheduler/caps.py keys)
CAP_NAMESPACE = "verify"
MIN_LENGTH, MAX_LENGTH = 4, 8
MIN_TTL, MAX_TTL = 60, 3600
MIN_AFTER, MAX_AFTER = 10, 3600
PURPOSE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CODE = re.compile(r"^[0-9]{4,8}$")
DEFAULT_PURPOSE = "default"
#: a check's answer for a wrong code with attempts left (the verification stays pending)
DENIED = "denied"


class VerificationError(Exception):
    """Base of what creating or checking a verification raises (beside InvalidRequest)."""


class VerificationsDisabled(VerificationError):
    def __init__(self) -> None:
        super().__init__("set NOTIFYQ_VERIFY_SECRET to create verifications")


class TooManyRequests(VerificationError):
    """The number has had its codes for now; ``retry_after`` seconds until the next."""

    def __init__(self, retry_after: float, cap: str | None) -> None:
        self.retry_after = retry_after
        self.cap = cap
        super().__init__(f"too many codes for this number ({cap}); retry in {retry_after:.0f} s")


class NoSuchVerification(VerificationError):
    def __init__(self, verification_id: int) -> None:
        super().__init__(f"no verification {verification_id}")


@dataclass(frozen=True)
class Created:
    id: int
    status: str
    channel: str
    provider: str
    expires_at: float
    notification_id: int
    fallback_id: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "channel": self.channel,
            "provider": self.provider,
            "expires_at": iso(self.expires_at),
        }


@dataclass(frozen=True)
class Checked:
    id: int
    status: str
    attempts_left: int | None = None
    #: for ``expired``: why — ``expired``, ``used`` or ``superseded``
    reason: str | None = None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.attempts_left is not None:
            out["attempts_left"] = self.attempts_left
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def digest(secret: str, salt: str, code: str) -> str:
    """HMAC-SHA256 of ``salt:code`` keyed by the deployment's secret, hex."""
    return hmac.new(secret.encode(), f"{salt}:{code}".encode(), hashlib.sha256).hexdigest()


def new_code(length: int) -> str:
    return f"{secrets.randbelow(10**length):0{length}d}"


def _secret(rt: Runtime) -> str:
    if rt.settings.verify_secret is None or not rt.settings.verify_secret.get_secret_value():
        raise VerificationsDisabled()
    return rt.settings.verify_secret.get_secret_value()


# -- create -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ask:
    """A create request with its defaults filled in and its ranges checked."""

    channel: str
    provider: str
    length: int
    ttl: float
    purpose: str
    template: str | None
    voice_after: float | None


def _ask(
    rt: Runtime,
    channel: Any,
    provider: Any,
    length: Any,
    ttl: Any,
    purpose: Any,
    template: Any,
    voice_after: Any,
) -> _Ask:
    settings = rt.settings
    errors: list[FieldError] = []
    if channel not in CHANNELS:
        errors.append(FieldError("channel", "must be sms or voice"))
        raise InvalidRequest(errors)
    allowed = _carriers(rt, channel)
    default = allowed[0] if channel == "sms" else settings.verify_voice_provider
    chosen = provider or default
    if chosen not in allowed:
        errors.append(FieldError("provider", f"for {channel}: one of {', '.join(allowed)}"))
    length = settings.verify_length if length is None else length
    if isinstance(length, bool) or not isinstance(length, int):
        errors.append(FieldError("length", "must be a whole number"))
    elif not MIN_LENGTH <= length <= MAX_LENGTH:
        errors.append(FieldError("length", f"must be {MIN_LENGTH} to {MAX_LENGTH} digits"))
    ttl = settings.verify_ttl if ttl is None else ttl
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not MIN_TTL <= ttl <= MAX_TTL:
        errors.append(FieldError("ttl", f"must be {MIN_TTL} to {MAX_TTL} seconds"))
    purpose = DEFAULT_PURPOSE if purpose in (None, "") else purpose
    if not isinstance(purpose, str) or not PURPOSE.match(purpose):
        errors.append(FieldError("purpose", "1 to 64 of A-Z a-z 0-9 _ . : -"))
    if template is not None and (not isinstance(template, str) or not template.strip()):
        errors.append(FieldError("template", "must be non-empty text"))
    if voice_after is not None:
        if channel != "sms":
            errors.append(FieldError("voice_after", "only with channel sms"))
        elif (
            isinstance(voice_after, bool)
            or not isinstance(voice_after, int | float)
            or not MIN_AFTER <= voice_after <= MAX_AFTER
        ):
            errors.append(FieldError("voice_after", f"must be {MIN_AFTER} to {MAX_AFTER} seconds"))
    if errors:
        raise InvalidRequest(errors)
    return _Ask(
        channel,
        chosen,
        int(length),
        float(ttl),
        purpose,
        template,
        None if voice_after is None else float(voice_after),
    )


def _carriers(rt: Runtime, channel: str) -> tuple[str, ...]:
    """The providers that carry codes on ``channel``, in the registry's order."""
    return tuple(name for name, p in rt.providers.items() if p.code_channel == channel)


def _configured(rt: Runtime, provider: str) -> str:
    """The provider's text or template id for codes, as its setting holds it."""
    setting = rt.providers[provider].code_setting
    return str(getattr(rt.settings, setting)) if setting else ""


def _leg(rt: Runtime, provider: str, template: str | None, code: str) -> RouteLeg:
    """The notification that carries ``code`` through ``provider``; ``template`` (else
    the provider's setting for codes) is its text or template id, as the provider says."""
    leg = rt.providers[provider].carry_code(code, template or _configured(rt, provider))
    return RouteLeg(provider, template=leg.template, content=leg.content, params=leg.params)


def _voice_route(rt: Runtime, provider: str, code: str) -> tuple[RouteLeg, ...]:
    """The other voice providers as fail-over legs, those configured for codes."""
    return tuple(
        _leg(rt, other, None, code)
        for other in _carriers(rt, "voice")
        if other != provider and _configured(rt, other)
    )


def _draft(rt: Runtime, to: str, leg: RouteLeg, route: Sequence[RouteLeg], **extra: Any) -> Any:
    """Validated as any notification is; errors renamed to the verification's fields,
    and never carrying a value (the code would be one). A code is always urgent: someone
    is waiting on it."""
    request = SendRequest(
        provider=leg.provider,
        to=to,
        template=leg.template,
        content=leg.content,
        params=leg.params,
        route=tuple(route),
        priority=Priority.URGENT,
        **extra,
    )
    try:
        return validate(request, rt.providers)
    except InvalidRequest as exc:
        fields = {"to": "to", "not_before": "voice_after"}
        raise InvalidRequest(
            [
                FieldError(fields.get(e.field, "template"), e.message)
                for e in exc.errors
                if not e.field.startswith("route")
            ]
            or [FieldError("template", "not accepted by the fail-over provider")]
        ) from None


def create_verification(
    to: str,
    channel: str = "sms",
    *,
    template: str | None = None,
    provider: str | None = None,
    length: int | None = None,
    ttl: float | None = None,
    purpose: str | None = None,
    voice_after: float | None = None,
    owner: str = DEFAULT_OWNER,
    runtime: Runtime | None = None,
) -> Created:
    """Create a verification and send its code; raises InvalidRequest (naming each
    field), TooManyRequests or VerificationsDisabled. The code is returned to no one.
    ``owner``: the key name it and its notifications belong to (store/keys.py)."""
    rt = runtime or get_runtime()
    secret = _secret(rt)
    if not isinstance(to, str) or not to.strip():
        raise InvalidRequest([FieldError("to", "required: the number to verify")])
    ask = _ask(rt, channel, provider, length, ttl, purpose, template, voice_after)
    code = new_code(ask.length)
    leg = _leg(rt, ask.provider, ask.template, code)
    route = _voice_route(rt, ask.provider, code) if ask.channel == "voice" else ()
    first = _draft(rt, to, leg, route, owner=owner)
    number = first.to
    now = rt.redis_now()
    fallback = None
    if ask.voice_after is not None:
        voice = rt.settings.verify_voice_provider
        try:
            fallback = _draft(
                rt,
                number,
                _leg(rt, voice, None, code),
                _voice_route(rt, voice, code),
                not_before=now + ask.voice_after,
                owner=owner,
            )
        except InvalidRequest as exc:  # the configured voice resend cannot go to this number
            raise InvalidRequest(
                [FieldError("voice_after", f"the {voice} resend: {e.message}") for e in exc.errors]
            ) from None
    decision = rt.caps.hit(CAP_NAMESPACE, number, parse_caps(rt.settings.verify_caps))
    if not decision.allowed:
        VERIFICATION_LIMITED.inc()
        assert decision.retry_at is not None
        raise TooManyRequests(max(1.0, decision.retry_at - decision.now), decision.cap)
    salt = secrets.token_hex(16)
    new = NewVerification(
        to=number,
        purpose=ask.purpose,
        channel=ask.channel,
        provider=ask.provider,
        salt=salt,
        code_hmac=digest(secret, salt, code),
        length=ask.length,
        max_attempts=rt.settings.verify_max_attempts,
        expires_at=now + ask.ttl,
        owner=owner,
    )
    try:
        created, enqueued = _store(rt, new, [first] + ([fallback] if fallback else []), now)
    except Exception:
        rt.caps.refund(CAP_NAMESPACE, number, decision)  # nothing was sent: the slot goes back
        raise
    hand_off(rt, enqueued)
    VERIFICATIONS.labels(ask.channel).inc()
    log.info(
        "verification %s: a %d-digit code to %s by %s (%s), for %s",
        created.id,
        ask.length,
        mask(number),
        ask.channel,
        ask.provider,
        owner,
    )
    return created


def _store(
    rt: Runtime, new: NewVerification, drafts: list[NewNotification], now: float
) -> tuple[Created, list[Enqueued]]:
    """One transaction: the older pending codes of this number and purpose cancelled
    (and their unsent notifications), the notification(s) stored secret, the row."""
    store = VerificationStore(rt.db)
    table = Notification.__table__
    with rt.db.write() as conn:
        old = store.pending_for(conn, new.to, new.purpose)
        for row in old:
            store.move(conn, row, now=now, status=CANCELLED)
        _end_notifications(rt, conn, old, now, "verification:superseded")
        # the ledger's own insert, inside this transaction (so the row, its secret flag and
        # the verification commit together or not at all)
        enqueued = rt.notifications._insert(conn, drafts, now)
        ids = [e.id for e in enqueued]
        conn.execute(table.update().where(table.c.id.in_(ids)).values(secret=True))
        fallback_id = ids[1] if len(ids) > 1 else None
        verification_id = store.insert(
            conn, new, notification_id=ids[0], fallback_id=fallback_id, now=now
        )
    return (
        Created(
            verification_id,
            PENDING,
            new.channel,
            new.provider,
            new.expires_at,
            ids[0],
            fallback_id,
        ),
        enqueued,
    )


def _end_notifications(rt: Runtime, conn: Any, rows: Sequence[Any], now: float, why: str) -> None:
    """The notifications of verifications that ended: those still waiting are cancelled
    (their code erased in the same change); those whose send ended another way (a
    sweeper's ``unknown``) have their code erased."""
    ids = [i for row in rows for i in (row.notification_id, row.fallback_id) if i is not None]
    if not ids:
        return
    current = rt.notifications.load(conn, ids)
    rt.notifications.transition(
        [
            Change(
                n.id,
                Status.CANCELLED,
                expect=Expect.row(n),
                reason=why,
                values={"next_attempt_at": None, **ERASED},
            )
            for n in current
            if Status(n.status) in WAITING
        ],
        now=now,
        conn=conn,
    )
    erase_finished(conn, ids)


# -- check --------------------------------------------------------------------------------


def check_verification(
    verification_id: int,
    code: Any,
    *,
    owner: str | None = None,
    by: str = CLI_ACTOR,
    runtime: Runtime | None = None,
) -> Checked:
    """Check a code; raises InvalidRequest for a code that is not 4-8 digits (nothing
    counted), NoSuchVerification (also for another key name's, with ``owner``: nothing
    counted either), VerificationsDisabled. ``by`` names who checked, in the log."""
    rt = runtime or get_runtime()
    secret = _secret(rt)
    if not isinstance(code, str) or not CODE.match(code):
        raise InvalidRequest([FieldError("code", "must be 4 to 8 digits")])
    store = VerificationStore(rt.db)
    now = rt.redis_now()
    with rt.db.write() as conn:
        row = store.locked(conn, verification_id, owner=owner)
        if row is None:
            raise NoSuchVerification(verification_id)
        answer = _decide(row, secret, code, now)
        if row.status == PENDING:
            values = _after_check(row, answer)
            if not store.move(conn, row, now=now, **values):  # pragma: no cover - locked
                raise VerificationError("the verification changed during the check; try again")
            if values.get("status") in ENDED:
                _end_notifications(rt, conn, [row], now, f"verification:{values['status']}")
    VERIFICATION_CHECKS.labels(answer.status).inc()
    log.info("verification %s checked by %s: %s", verification_id, by, answer.status)
    return answer


def _after_check(row: Any, answer: Checked) -> dict[str, Any]:
    """What a check of a pending verification writes: a compared code counts an attempt;
    a code past its time is not compared at all."""
    if answer.status == EXPIRED:
        return {"status": EXPIRED}
    counted = {"attempts": row.attempts + 1}
    return counted if answer.status == DENIED else {**counted, "status": answer.status}


def _decide(row: Any, secret: str, code: str, now: float) -> Checked:
    """What a check of ``code`` answers for ``row`` as it stands (no writes)."""
    if row.status == TOO_MANY_ATTEMPTS:
        return Checked(row.id, TOO_MANY_ATTEMPTS, 0)
    if row.status == APPROVED:
        return Checked(row.id, EXPIRED, reason="used")
    if row.status == CANCELLED:
        return Checked(row.id, EXPIRED, reason="superseded")
    if row.status == EXPIRED:
        return Checked(row.id, EXPIRED, reason="expired")
    if now >= row.expires_at:
        return Checked(row.id, EXPIRED, reason="expired")
    right = hmac.compare_digest(digest(secret, row.salt, code), row.code_hmac)
    attempts = row.attempts + 1
    if right:
        return Checked(row.id, APPROVED)
    if attempts >= row.max_attempts:
        return Checked(row.id, TOO_MANY_ATTEMPTS, 0)
    return Checked(row.id, DENIED, row.max_attempts - attempts)


# -- read, expire ---------------------------------------------------------------------------


def verification_view(
    rt: Runtime, verification_id: int, *, owner: str | None = None
) -> dict[str, Any] | None:
    """A verification as callers see it: never the code, the number masked. None for
    an id that does not exist and, with ``owner``, for another key name's."""
    row = VerificationStore(rt.db).get(verification_id, owner=owner)
    if row is None:
        return None
    delivery = None
    if row.notification_id is not None:
        sent = rt.notifications.get(row.notification_id)
        if sent is not None:
            delivery = {
                "notification_id": sent.id,
                "status": Status(sent.status).value,
                "reason": sent.reason,
            }
    return {
        "id": row.id,
        "to": mask(row.to),
        "purpose": row.purpose,
        "channel": row.channel,
        "provider": row.provider,
        "status": row.status,
        "owner": row.owner,
        "attempts": row.attempts,
        "attempts_left": max(0, row.max_attempts - row.attempts) if row.status == PENDING else None,
        "expires_at": iso(row.expires_at),
        "created_at": iso(row.created_at),
        "delivery": delivery,
        "fallback_notification_id": row.fallback_id,
    }


def expire_due(rt: Runtime, *, now: float | None = None, limit: int = 500) -> int:
    """Pending verifications past their time become ``expired`` and their notifications
    end (cancelled if unsent, the code erased either way). For a periodic run: a code
    nobody checks must not wait in the ledger until someone does."""
    now = rt.redis_now() if now is None else now
    store = VerificationStore(rt.db)
    rows = store.overdue(now=now, limit=limit)
    expired = 0
    with rt.db.write() as conn:
        for row in rows:
            if store.move(conn, row, now=now, status=EXPIRED):
                expired += 1
        _end_notifications(rt, conn, rows, now, "verification:expired")
    return expired
