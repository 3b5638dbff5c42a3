"""A send request as every way in (CLI, HTTP, Python) states it, and its validation.

Validation happens here, at the door, before anything is stored: the provider checks
its own number rules, options and template variables; a route checks every leg. One
error per field, named the way the caller wrote it (``to``, ``options.playTimes``,
``route[1].template``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from providers import registry
from providers.base import Draft, FieldError, InvalidRequest, Provider
from scheduler.priority import DEFAULT as DEFAULT_PRIORITY
from scheduler.priority import Priority
from store import NewNotification, RouteLeg
from store.notifications import Asked

MAX_KEY = 255


@dataclass(frozen=True)
class SendRequest(Draft, Asked):
    """A send as a caller states it: a draft, its fail-over legs and how it is queued."""

    #: fail-over legs, tried in order when the provider before is unavailable
    route: Sequence[RouteLeg] = ()
    #: epoch seconds, an ISO 8601 string, or an aware datetime
    not_before: float | str | datetime | None = None
    #: urgent, normal or bulk (scheduler/priority.py); None: normal
    priority: str | None = None


def parse_time(
    value: float | str | datetime | None, field_name: str, errors: list[FieldError]
) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            errors.append(FieldError(field_name, "needs a time zone (e.g. +08:00 or Z)"))
            return None
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            errors.append(FieldError(field_name, "must be a moment in time"))
            return None
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            errors.append(
                FieldError(field_name, "must be an ISO 8601 time, e.g. 2026-12-01T10:00:00+08:00")
            )
            return None
        return parse_time(moment, field_name, errors)
    errors.append(FieldError(field_name, "must be an ISO 8601 time"))
    return None


def _leg_errors(prefix: str, provider: Provider, draft: Draft) -> tuple[Any, list[FieldError]]:
    try:
        return provider.validate(draft), []
    except InvalidRequest as exc:
        return None, [FieldError(f"{prefix}{e.field}", e.message) for e in exc.errors]


def validate(
    request: SendRequest, providers: Mapping[str, Provider], *, now: float | None = None
) -> NewNotification:
    """The row to store for this request, or InvalidRequest naming every bad field."""
    errors: list[FieldError] = []
    legs = [
        RouteLeg(
            request.provider,
            template=request.template,
            content=request.content,
            params=request.params,
            options=request.options,
        ),
        *request.route,
    ]
    valid = []
    for index, leg in enumerate(legs):
        prefix = "" if index == 0 else f"route[{index}]."
        provider = providers.get(leg.provider)
        if provider is None:
            errors.append(
                FieldError(
                    f"{prefix}provider", f"unknown provider (one of: {', '.join(registry.names())})"
                )
            )
            continue
        params = leg.params
        if isinstance(params, str) or not all(isinstance(p, str | int) for p in params):
            errors.append(FieldError(f"{prefix}params", "must be a list of strings"))
            continue
        if not isinstance(leg.options, Mapping):
            errors.append(FieldError(f"{prefix}options", "must be an object"))
            continue
        draft = Draft(
            provider=leg.provider,
            to=request.to,
            template=leg.template,
            content=leg.content,
            params=tuple(str(p) for p in params),
            options=dict(leg.options),
        )
        checked, leg_errors = _leg_errors(prefix, provider, draft)
        errors += leg_errors
        valid.append((leg.provider, checked))
    if request.idempotency_key is not None and not (0 < len(request.idempotency_key) <= MAX_KEY):
        errors.append(FieldError("idempotency_key", f"must be 1 to {MAX_KEY} characters"))
    not_before = parse_time(request.not_before, "not_before", errors)
    priority = _priority(request.priority, errors)
    now = time.time() if now is None else now
    if not_before is not None and not_before > now + 366 * 86400:
        errors.append(FieldError("not_before", "must be within a year"))
    numbers = {checked.to for _, checked in valid if checked is not None}
    if len(numbers) > 1:
        errors.append(FieldError("route", "every provider of a route must call the same number"))
    if errors:
        raise InvalidRequest(errors)
    first_provider, first = valid[0]
    return NewNotification(
        provider=first_provider,
        to=first.to,
        template=first.template,
        content=first.content,
        params=first.params,
        options=dict(first.options),
        route=[
            RouteLeg(
                name,
                template=v.template,
                content=v.content,
                params=tuple(v.params),
                options=dict(v.options),
            ).to_json()
            for name, v in valid[1:]
        ]
        or None,
        idempotency_key=request.idempotency_key,
        campaign_id=request.campaign_id,
        not_before=not_before,
        owner=request.owner,
        priority=priority,
    )


def _priority(value: object, errors: list[FieldError]) -> Priority:
    if value is None:
        return DEFAULT_PRIORITY
    try:
        return Priority.parse(value)
    except ValueError as exc:
        errors.append(FieldError("priority", str(exc)))
        return DEFAULT_PRIORITY
