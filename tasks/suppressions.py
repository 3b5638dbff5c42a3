"""Numbers that must not be called again, and why.

Three ways a number is suppressed:

- a person opts out (``POST /v1/suppressions``, ``notifyq suppress add``): every
  provider, reason ``opt-out`` unless the caller gives one;
- an operator suppresses it for one provider;
- a provider answers that the number is bad — a code whose rule carries ``bad_number``
  (``providers/*.py``; e.g. ihuyi 4030 blacklisted, 406 malformed): learnt after the
  outcome is committed (:func:`learn`, from ``tasks/dispatch.py``), for that provider,
  or for every provider with ``NOTIFYQ_SUPPRESS_SCOPE=all``; or a receipt says so
  (ihuyi ``-5``, vacant: :func:`learn_receipts`, for the receipt routes to call).

Admission (``tasks/admission.py``) looks the batch up in one query before anything
else: a suppressed row ends ``failed`` with reason ``suppressed:<why>`` and no call —
or, suppressed by its own provider only and given a route, moves to the next leg.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from observe.metrics import SUPPRESSIONS_ADDED
from providers import registry
from providers.base import DeliveryReceipt, FieldError, InvalidRequest, e164, mask, parse_number
from store.schema import Notification
from store.suppressions import ALL, PREFIX, Hit, NewSuppression, SuppressionStore
from tasks.runtime import Runtime

log = logging.getLogger(__name__)

OPT_OUT = "opt-out"
#: a reason is one word of the ``suppressed:<why>`` a notification ends with
REASON = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_PAGE = 1000


@dataclass(frozen=True)
class SuppressionView:
    to: str
    provider: str
    reason: str
    source: str
    created_at: float

    def public(self) -> dict[str, Any]:
        """As the API and ``--json`` show it: the number masked."""
        return {
            "to": mask(self.to),
            "provider": None if self.provider == ALL else self.provider,
            "reason": self.reason,
            "source": self.source,
            "created_at": self.created_at,
        }


def store(rt: Runtime) -> SuppressionStore:
    return SuppressionStore(rt.db)


def number(raw: Any) -> str:
    """The number in E.164, or InvalidRequest naming ``to`` (never echoing it)."""
    parsed = parse_number(str(raw)) if isinstance(raw, str | int) else None
    if parsed is None:
        raise InvalidRequest([FieldError("to", "not a valid phone number")])
    return e164(parsed)


def provider_name(raw: str | None) -> str:
    """A provider name, or ``*`` for none (every provider)."""
    if raw in (None, "", ALL):
        return ALL
    if raw not in registry.names():
        known = ", ".join(registry.names())
        raise InvalidRequest([FieldError("provider", f"unknown provider (one of: {known})")])
    return str(raw)


def reason_word(raw: str | None, default: str = OPT_OUT) -> str:
    text = (raw or default).strip().lower()
    if not REASON.match(text):
        raise InvalidRequest(
            [FieldError("reason", "one word of a-z, 0-9, '-', '_', '.' (at most 64)")]
        )
    return text


def add(
    rt: Runtime,
    to: Any,
    *,
    provider: str | None = None,
    reason: str | None = None,
    source: str = "api",
) -> tuple[SuppressionView, bool]:
    """Suppress a number (every provider unless one is named). Returns the suppression
    as stored and whether it is new (an existing one keeps its first reason)."""
    errors: list[FieldError] = []
    checked: dict[str, str] = {}
    for name, check in (
        ("to", lambda: number(to)),
        ("provider", lambda: provider_name(provider)),
        ("reason", lambda: reason_word(reason)),
    ):
        try:
            checked[name] = check()
        except InvalidRequest as exc:
            errors += exc.errors
    if errors:
        raise InvalidRequest(errors)
    entry = NewSuppression(checked["to"], checked["provider"], checked["reason"], source)
    created = store(rt).add([entry], now=rt.redis_now()) > 0
    if created:
        SUPPRESSIONS_ADDED.labels(source).inc()
        log.info(
            "suppressed %s for %s (%s, from %s)",
            mask(entry.to),
            entry.provider,
            entry.reason,
            source,
        )
    (view,) = [v for v in lookup(rt, entry.to) if v.provider == entry.provider]
    return view, created


def remove(rt: Runtime, to: Any, *, provider: str | None = None) -> int:
    """Lift a number's suppressions (one provider's, or all of them); how many went."""
    target = number(to)
    which = None if provider in (None, "") else provider_name(provider)
    removed = store(rt).remove(target, which)
    if removed:
        log.info("suppression of %s lifted (%s)", mask(target), which or "every provider")
    return removed


def lookup(rt: Runtime, to: Any) -> list[SuppressionView]:
    """One number's suppressions."""
    return [_view(row) for row in store(rt).get(number(to))]


def page(
    rt: Runtime, *, provider: str | None = None, after: int = 0, limit: int = 100
) -> tuple[list[SuppressionView], int | None]:
    """A page of suppressions and the cursor of the next one (None at the end)."""
    which = None if provider in (None, "") else provider_name(provider)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest([FieldError("limit", f"must be 1 to {MAX_PAGE}")])
    if after < 0:
        raise InvalidRequest([FieldError("after", "must be 0 or more")])
    rows = store(rt).page(provider=which, after=after, limit=limit)
    cursor = rows[-1].id if len(rows) == limit else None
    return [_view(row) for row in rows], cursor


def _view(row: Any) -> SuppressionView:
    return SuppressionView(row.to, row.provider, row.reason, row.source, row.created_at)


def hits(rt: Runtime, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Hit]:
    """(provider, number) → why it may not be called, for a whole batch in one query."""
    return store(rt).hits(pairs)


def refusal_reason(why: str) -> str:
    return f"{PREFIX}{why}"


def learn(rt: Runtime, bad: Sequence[tuple[str, str, str, str]]) -> int:
    """Suppress what providers reported bad: (provider, number, why, code) each.

    Runs after the outcome that reported it is committed; a database that refuses now
    costs only the lesson (the next send to that number is refused by the provider
    and learnt again), so the error is logged, never raised."""
    everywhere = rt.settings.suppress_scope == "all"
    entries = [
        NewSuppression(to, ALL if everywhere else provider, why, f"{provider}:{code}")
        for provider, to, why, code in bad
    ]
    try:
        now = rt.redis_now()
    except RedisError:
        now = time.time()  # the stamp only dates the suppression
    try:
        added = store(rt).add(entries, now=now)
    except SQLAlchemyError as exc:
        log.warning("could not record %d bad number(s): %s", len(entries), type(exc).__name__)
        return 0
    if added:
        SUPPRESSIONS_ADDED.labels("provider").inc(added)
    for entry in entries:
        log.info(
            "%s reported %s as %s: suppressed for %s",
            entry.source,
            mask(entry.to),
            entry.reason,
            "every provider" if everywhere else entry.provider,
        )
    return added


def learn_receipts(rt: Runtime, provider: str, receipts: Sequence[DeliveryReceipt]) -> int:
    """Suppress the numbers whose receipts say they are bad (ihuyi ``-5``, vacant): each
    receipt's reference names the notification, whose number it is. For the receipt
    routes, once the receipts are committed; a receipt for a call not (yet) ours teaches
    nothing."""
    bad = {r.ref: (r.bad_number, r.code) for r in receipts if r.bad_number}
    if not bad:
        return 0
    table = Notification.__table__
    try:
        with rt.db.read() as conn:
            found = conn.execute(
                select(table.c.provider_ref, table.c.to).where(
                    table.c.provider == provider, table.c.provider_ref.in_(list(bad))
                )
            ).all()
    except SQLAlchemyError as exc:
        log.warning("could not read the numbers of %d receipt(s): %s", len(bad), type(exc).__name__)
        return 0
    lessons = [(provider, row.to, *bad[row.provider_ref]) for row in found]
    return learn(rt, [(p, to, str(why), str(code)) for p, to, why, code in lessons])


def suppressed_in_campaign(rt: Runtime, campaign_id: int, *, owner: str | None = None) -> int:
    return store(rt).suppressed_in_campaign(campaign_id, owner=owner)
