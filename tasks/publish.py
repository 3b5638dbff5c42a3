"""Handing notification ids to the workers: dispatch messages carry ids, nothing else.

Each message goes to the queue of its ids' priority class (worker/queues.py), so the
workers take urgent ones before normal ones before bulk; one message carries ids of one
class only.

Two ways out:

- :func:`publish_dispatch` publishes now, in the caller's thread, ``batch`` ids a message.
- :func:`gather_dispatch` hands the ids to this process's :class:`DispatchPublisher`,
  which publishes what was gathered within ``linger`` seconds as one message (up to
  ``batch`` ids). It is how notifications enqueued one at a time become batched dispatch
  tasks: a worker then pays one ``sending`` and one outcome transaction per *message*,
  not per notification, and the broker carries one message, not ``batch`` of them.

Gathering is safe because nothing is gathered that is not committed first: every row
handed here is already in the ledger with its hand-off stamp (``published_at``), and the
sweeper re-drives a waiting row whose stamp is older than ``NOTIFYQ_SWEEP_GRACE``. So a
publish lost to a crash between commit and flush (or to Redis being away) delays that
notification by the grace; it never loses it, and the broker never sees an id whose row
is not committed.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence

from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from scheduler.priority import DEFAULT as DEFAULT_PRIORITY
from scheduler.priority import Priority
from worker.queues import DISPATCH_QUEUES

log = logging.getLogger(__name__)

DISPATCH = "notifyq.dispatch"

#: the publisher thread exits after this long with nothing to publish (restarted on demand)
IDLE_EXIT = 2.0

#: called once the ids it came with have been published (or their publish has failed:
#: then the sweeper re-drives them); from the publisher's thread, so it must be quick
Then = Callable[[], None]


def publish_dispatch(
    app: Celery, ids: Sequence[int], *, batch: int, priority: Priority = DEFAULT_PRIORITY
) -> int:
    """Publish dispatch tasks for ``ids`` (all of class ``priority``) in batches, on that
    class's queue; returns how many messages went out."""
    messages = 0
    queue = DISPATCH_QUEUES[Priority(priority).value]
    with app.producer_or_acquire() as producer:
        for start in range(0, len(ids), batch):
            chunk = [int(i) for i in ids[start : start + batch]]
            app.send_task(DISPATCH, args=[chunk], queue=queue, producer=producer)
            messages += 1
    return messages


def publish_by_priority(
    app: Celery, ids_and_classes: Sequence[tuple[int, str]], *, batch: int
) -> int:
    """Publish ``(id, priority)`` pairs, each class on its own queue, most urgent first."""
    by_class: dict[Priority, list[int]] = {}
    for notification_id, priority in ids_and_classes:
        by_class.setdefault(Priority(priority), []).append(int(notification_id))
    ordered = [p for p in Priority if p in by_class]
    return sum(publish_dispatch(app, by_class[p], batch=batch, priority=p) for p in ordered)


class DispatchPublisher:
    """Gathers committed ids for up to ``linger`` seconds and publishes them together.

    The latency trade-off: a notification enqueued alone waits up to ``linger`` (30 ms by
    default, ``NOTIFYQ_PUBLISH_LINGER``; a code not at all) before its dispatch message
    leaves — against a provider call of ~200 ms that is noise — and in exchange a producer calling
    ``enqueue()`` in a loop, or from many threads, sends one message per ``linger``
    instead of one per notification. A full batch leaves at once, without waiting out
    the linger. The caller never waits for the publish (its promise is the commit).

    One background thread per publisher, started on the first :meth:`submit` and gone
    after ``IDLE_EXIT`` seconds of nothing; :meth:`flush` publishes what is waiting now
    and returns when it is out (used at process exit, by tests and by the benches).
    """

    def __init__(
        self,
        app: Celery,
        *,
        batch: int,
        linger: float,
        priority: Priority = DEFAULT_PRIORITY,
    ) -> None:
        self.app = app
        self.batch = batch
        self.linger = linger
        self.priority = priority
        self.messages = 0
        self._cond = threading.Condition()
        self._pending: list[int] = []
        self._then: list[Then] = []  # the callbacks of the pending ids
        self._first_at = 0.0  # monotonic time the oldest pending id arrived
        self._thread: threading.Thread | None = None
        self._busy = False  # a publish is under way (flush waits for it)

    def submit(self, ids: Sequence[int], then: Then | None = None) -> None:
        """Publish ``ids`` within the linger; ``then()`` once they have gone out (or could
        not: a Redis error is logged and the sweeper re-drives them)."""
        if not ids:
            if then is not None:
                _call(then)
            return
        with self._cond:
            idle = not self._pending
            if idle:
                self._first_at = time.monotonic()
            self._pending.extend(int(i) for i in ids)
            if then is not None:
                self._then.append(then)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="notifyq-dispatch-publisher", daemon=True
                )
                self._thread.start()
            # wake the thread only to start a linger or to send a full batch: while a
            # linger runs it wakes on its own, and each needless wake-up costs the
            # producing thread a GIL hand-off (measured: ~0.7 ms of a 1.7 ms enqueue())
            if idle or len(self._pending) >= self.batch:
                self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> None:
        """Publish everything submitted so far, and wait until it has gone out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._first_at = 0.0  # due now
            self._cond.notify_all()
            while self._pending or self._busy:
                if self._thread is None or not self._thread.is_alive():
                    break  # no thread (exit after a fork, interpreter shutdown): do it here
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.05))
            ids, self._pending = self._pending, []
            then, self._then = self._then, []
        if ids:
            self._publish(ids, then)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._pending:
                        due = self._first_at + self.linger
                        wait = due - time.monotonic()
                        if len(self._pending) >= self.batch or wait <= 0:
                            break
                        self._cond.wait(wait)
                    elif not self._cond.wait(IDLE_EXIT) and not self._pending:
                        self._thread = None
                        return
                ids, self._pending = self._pending, []
                then, self._then = self._then, []
                self._busy = True
            try:
                self._publish(ids, then)
            finally:
                with self._cond:
                    self._busy = False
                    if self._pending:
                        self._first_at = time.monotonic()
                    self._cond.notify_all()

    def _publish(self, ids: list[int], then: Sequence[Then] = ()) -> None:
        try:
            self._send(ids)
        finally:
            for callback in then:
                _call(callback)

    def _send(self, ids: list[int]) -> None:
        try:
            self.messages += publish_dispatch(
                self.app, ids, batch=self.batch, priority=self.priority
            )
        except (RedisError, OperationalError, OSError) as exc:
            log.warning(
                "could not hand %d stored notification(s) to Redis (%s); "
                "the sweeper will re-drive them",
                len(ids),
                type(exc).__name__,
            )
        except Exception:  # never let the thread die with ids in hand unlogged
            log.exception("publishing %d stored notification(s) failed", len(ids))


def _call(then: Then) -> None:
    try:
        then()
    except Exception:  # one caller's callback never stops the others'
        log.exception("a publish callback failed")


_lock = threading.Lock()
_publishers: weakref.WeakKeyDictionary[Celery, dict[Priority, DispatchPublisher]] = (
    weakref.WeakKeyDictionary()
)
_pid = os.getpid()


def publisher_for(
    app: Celery, *, batch: int, linger: float, priority: Priority = DEFAULT_PRIORITY
) -> DispatchPublisher:
    """This process's publisher of ``priority`` messages for ``app`` (a fork starts with
    none of its parent's)."""
    global _pid  # noqa: PLW0603 -- one registry per process
    with _lock:
        if _pid != os.getpid():
            _publishers.clear()
            _pid = os.getpid()
        of_app = _publishers.setdefault(app, {})
        publisher = of_app.get(priority)
        if publisher is None:
            publisher = of_app[priority] = DispatchPublisher(
                app, batch=batch, linger=linger, priority=priority
            )
        return publisher


def gather_dispatch(
    app: Celery,
    ids: Sequence[int],
    *,
    batch: int,
    linger: float,
    then: Then | None = None,
    priority: Priority = DEFAULT_PRIORITY,
) -> None:
    """Hand committed ``ids`` (all of class ``priority``) to this process's publisher of
    that class; publishes now if ``linger`` ≤ 0.

    ``then()`` is called exactly once, when the ids are out or their publish failed.

    Codes (``urgent``) never linger: they are few, and a login code's wait is the
    product; the linger is for the classes whose messages it fills."""
    if linger <= 0 or Priority(priority) is Priority.URGENT:
        try:
            publish_dispatch(app, ids, batch=batch, priority=priority)
        finally:
            if then is not None:
                _call(then)
        return
    publisher_for(app, batch=batch, linger=linger, priority=priority).submit(ids, then)


def flush_dispatch() -> None:
    """Publish every id this process has gathered and not yet published."""
    with _lock:
        of_apps = list(_publishers.values()) if _pid == os.getpid() else []
    for of_app in of_apps:
        for publisher in list(of_app.values()):
            publisher.flush()


atexit.register(flush_dispatch)
