"""The producer API: validate, store (committed), then publish ``dispatch(ids)``.

Storing comes first: if publishing fails (Redis away), the row is safe in the ledger as
``queued`` and the sweeper hands it to the workers once Redis is back, so the caller
still gets its id and nothing is lost.

``enqueue()`` — one notification a call, the way most services produce — is built so
that calling it in a loop or from many threads costs about what ``enqueue_many`` does:

- **Group commit.** Threads that call ``enqueue()`` while another's INSERT is under way
  share the next transaction (store/group_commit.py): no timer, no added wait — a call
  that finds no transaction running starts one at once. Each call still returns only
  after *its* row is committed, with the answer a call of its own would have given.
- **Gathered publishing.** The committed ids go to this process's
  :class:`~tasks.publish.DispatchPublisher`, which publishes what arrived within
  ``NOTIFYQ_PUBLISH_LINGER`` (30 ms; codes do not linger) as one ``dispatch(ids)`` message of up to
  ``NOTIFYQ_DISPATCH_BATCH`` ids, so single enqueues become batched dispatch tasks.
  ``enqueue()`` does not wait for that publish: its promise is the commit, and a publish
  lost after it (a crash, Redis away) is re-driven by the sweeper.

``enqueue_many`` publishes before it returns — unless it is given
``then``: then its ids go the same gathered way as ``enqueue()``'s, and ``then()`` is
called once they are out. The HTTP API's own group commit (``api/coalesce.py``) uses
that: a single ``POST /v1/notifications`` is answered once its row is committed, as
``enqueue()`` returns, and its id leaves in one message with those of the other
requests of the same ``NOTIFYQ_PUBLISH_LINGER``.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from providers.base import InvalidRequest
from scheduler.priority import Priority
from store import Enqueued, NewNotification, NotificationStore, Status
from store.group_commit import Groups
from store.schema import DEFAULT_OWNER
from tasks.publish import Then, gather_dispatch, publish_by_priority
from tasks.requests import RouteLeg, SendRequest, validate
from tasks.runtime import Runtime, get_runtime

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
    owner: str = DEFAULT_OWNER,
    priority: str | None = None,
    runtime: Runtime | None = None,
) -> Enqueued:
    """Validate and enqueue one notification; raises InvalidRequest naming each bad field.
    ``owner``: the key name it belongs to (store/keys.py), the operator's by default.
    ``priority``: ``urgent``, ``normal`` (the default) or ``bulk`` (scheduler/priority.py).

    Returns once the row is committed; its dispatch message follows within
    ``NOTIFYQ_PUBLISH_LINGER`` (see the module's docstring)."""
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
        owner=owner,
        priority=priority,
    )
    rt = runtime or get_runtime()
    result = _group_for(rt).submit(rt, request)
    if isinstance(result, InvalidRequest):
        raise result
    return result


def enqueue_many(
    requests: Sequence[SendRequest], *, runtime: Runtime | None = None, then: Then | None = None
) -> list[Enqueued | InvalidRequest]:
    """Validate each request; store the valid ones in one transaction; publish them.

    A bad request never stops the good ones: its slot in the answer holds its errors.

    ``then``: return once the rows are committed and hand the ids to the process's
    publisher (gathered with others); ``then()`` follows once they are published (or
    their publish failed: the sweeper re-drives them). It is called exactly once, also
    when nothing was to be published. Without it, published before returning.
    """
    rt = runtime or get_runtime()
    results = _store(rt, requests)
    created = [r for r in results if isinstance(r, Enqueued) and r.created]
    if then is None:
        hand_off(rt, created)
    else:
        hand_off(rt, created, gather=True, then=then)
    return results


def _store(rt: Runtime, requests: Sequence[SendRequest]) -> list[Enqueued | InvalidRequest]:
    """Validate each request and insert the valid ones in one transaction."""
    drafts: list[NewNotification] = []
    answer: list[Enqueued | InvalidRequest | None] = []
    for request in requests:
        try:
            drafts.append(validate(request, rt.providers))
            answer.append(None)
        except InvalidRequest as exc:
            answer.append(exc)
    stored = iter(rt.notifications.insert(drafts) if drafts else [])
    return [slot if slot is not None else next(stored) for slot in answer]


def hand_off(
    rt: Runtime, created: Sequence[Enqueued], *, gather: bool = False, then: Then | None = None
) -> None:
    """Publish what may go now; put what waits for ``not_before`` in the deferred set.

    ``gather``: hand the ids to the process's publisher (published within the linger,
    batched with others) instead of publishing before returning; ``then()`` once they
    are out (called exactly once, whatever happens)."""
    now_ids: dict[Priority, list[int]] = {}
    for r in created:
        if r.status is Status.QUEUED:
            now_ids.setdefault(r.priority, []).append(r.id)
    later = [(r.id, r.next_attempt_at or 0.0) for r in created if r.status is Status.DEFERRED]
    handed = False  # ``then`` is the publishers' to call
    try:
        if later:
            rt.deferred.add(later)
        if now_ids and gather:
            handed = True
            each = _once_all_called(len(now_ids), then)
            for priority in Priority:  # most urgent first
                if priority in now_ids:
                    gather_dispatch(
                        rt.celery,
                        now_ids[priority],
                        batch=rt.settings.dispatch_batch,
                        linger=rt.settings.publish_linger,
                        then=each,
                        priority=priority,
                    )
        elif now_ids:
            publish_by_priority(
                rt.celery,
                [(i, p) for p, ids in now_ids.items() for i in ids],
                batch=rt.settings.dispatch_batch,
            )
    except (RedisError, OperationalError, OSError) as exc:
        log.warning(
            "stored %d notification(s) but could not hand them to Redis (%s); "
            "the sweeper will re-drive them",
            len(created),
            type(exc).__name__,
        )
    finally:
        if then is not None and not handed:
            then()


def _once_all_called(n: int, then: Then | None) -> Then | None:
    """A callback that calls ``then`` when it has itself been called ``n`` times: one
    publisher a class each calls it once, and ``then`` must follow them all, once."""
    if then is None or n <= 1:
        return then
    left = [n]
    lock = threading.Lock()

    def each() -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            then()

    return each


#: at most this many enqueue() calls share one transaction (a few ms of writing on SQLite)
MAX_GROUP = 500

Result = Enqueued | InvalidRequest


def _hand_off_group(rt: Runtime, results: list[Result]) -> None:
    hand_off(rt, [r for r in results if isinstance(r, Enqueued) and r.created], gather=True)


_groups: weakref.WeakKeyDictionary[NotificationStore, Groups[SendRequest, Result]] = (
    weakref.WeakKeyDictionary()
)
_groups_lock = threading.Lock()


def _group_for(rt: Runtime) -> Groups[SendRequest, Result]:
    """One group commit per store (per runtime), so calls share only one database."""
    with _groups_lock:
        group = _groups.get(rt.notifications)
        if group is None:
            group = _groups[rt.notifications] = Groups(
                _store, what="enqueues", max_group=MAX_GROUP, after=_hand_off_group
            )
        return group
