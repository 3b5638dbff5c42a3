"""The producer API: validate, store (committed), then publish ``dispatch(ids)``.

Storing comes first: if publishing fails (Redis away), the row is safe in the ledger as
``queued`` and the sweeper hands it to the workers once Redis is back, so the caller
still gets its id and nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from providers.base import InvalidRequest
from tasks.publish import publish_dispatch
from tasks.requests import RouteLeg, SendRequest, validate
from tasks.runtime import Runtime, get_runtime
from worker.store import Enqueued, NewNotification, Status

log = logging.getLogger(__name__)


def enqueue(
    provider: str,
    to: str,
    *,
    template: str | None = None,
    content: str | None = None,
    params: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
    route: Sequence[Mapping[str, Any] | RouteLeg] = (),
    idempotency_key: str | None = None,
    not_before: Any = None,
    runtime: Runtime | None = None,
) -> Enqueued:
    """Validate and enqueue one notification; raises InvalidRequest naming each bad field."""
    request = SendRequest(
        provider=provider,
        to=to,
        template=template,
        content=content,
        params=tuple(params),
        options=dict(options or {}),
        route=tuple(leg if isinstance(leg, RouteLeg) else RouteLeg(**leg) for leg in route),
        idempotency_key=idempotency_key,
        not_before=not_before,
    )
    (result,) = enqueue_many([request], runtime=runtime)
    if isinstance(result, InvalidRequest):
        raise result
    return result


def enqueue_many(
    requests: Sequence[SendRequest], *, runtime: Runtime | None = None
) -> list[Enqueued | InvalidRequest]:
    """Validate each request; store the valid ones in one transaction; publish them.

    A bad request never stops the good ones: its slot in the answer holds its errors.
    """
    rt = runtime or get_runtime()
    drafts: list[NewNotification] = []
    answer: list[Enqueued | InvalidRequest | None] = []
    for request in requests:
        try:
            drafts.append(validate(request, rt.providers))
            answer.append(None)
        except InvalidRequest as exc:
            answer.append(exc)
    stored = iter(rt.notifications.insert(drafts) if drafts else [])
    results: list[Enqueued | InvalidRequest] = [
        slot if slot is not None else next(stored) for slot in answer
    ]
    hand_off(rt, [r for r in results if isinstance(r, Enqueued) and r.created])
    return results


def hand_off(rt: Runtime, created: Sequence[Enqueued]) -> None:
    """Publish what may go now; put what waits for ``not_before`` in the deferred set."""
    now_ids = [r.id for r in created if r.status is Status.QUEUED]
    later = [(r.id, r.next_attempt_at or 0.0) for r in created if r.status is Status.DEFERRED]
    try:
        if later:
            rt.deferred.add(later)
        if now_ids:
            publish_dispatch(rt.celery, now_ids, batch=rt.settings.dispatch_batch)
    except (RedisError, OperationalError, OSError) as exc:
        log.warning(
            "stored %d notification(s) but could not hand them to Redis (%s); "
            "the sweeper will re-drive them",
            len(created),
            type(exc).__name__,
        )
