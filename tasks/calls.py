"""Placing the provider calls of one dispatch: group, build (signed now), send all
concurrently, and turn every answer into one :class:`SendResult` a notification.

Kept apart from :mod:`tasks.dispatch` because it is the only step that talks to a
provider: what a batch answer means for each of its numbers is decided here and in the
provider modules, never in the status bookkeeping around it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from observe.metrics import CALL_LATENCY
from providers.base import Message, MissingCredentials, Outcome, Reply, SendResult
from providers.http import LATE, Failure, MayWrite
from scheduler.priority import any_bulk
from store import NotificationRow
from tasks.attempts import Attempts
from tasks.runtime import Runtime

log = logging.getLogger(__name__)

#: one request's worth: a provider name and the messages it carries
Batch = tuple[str, list[Message]]

_LATE = Failure(sent=False, kind=LATE, detail="its numbers were taken before it could leave")


class Unsent(Enum):
    """Why a request never reached the provider: its cap slots go back."""

    #: not let leave (tasks/attempts.py): it waits again at once, the attempt uncounted
    LATE = "late"
    #: our own side failed before it was written (no connection, pool exhausted)
    NOT_WRITTEN = "not-written"


@dataclass
class Answers:
    """Every notification's result, and which requests never left."""

    results: list[SendResult] = field(default_factory=list)
    #: id → why its request never left (absent: it left, or may have)
    unsent: dict[int, Unsent] = field(default_factory=dict)

    def add_failure(self, messages: Sequence[Message], failure: Failure) -> None:
        """A request that got no reply: ambiguous if it may have left, else transient."""
        outcome = Outcome.AMBIGUOUS if failure.sent else Outcome.TRANSIENT
        self.results += [SendResult(m.id, outcome, failure.code, failure.detail) for m in messages]
        if not failure.sent:
            why = Unsent.LATE if failure.late else Unsent.NOT_WRITTEN
            self.unsent.update((m.id, why) for m in messages)


def call_providers(
    rt: Runtime, rows: Sequence[NotificationRow], attempts: Attempts | None = None
) -> Answers:
    """Group by provider and shared content, build one call per group (signed now),
    place them all concurrently, and turn every answer into results.

    A request of several numbers that the provider refused whole for a parameter error
    (:attr:`~providers.base.SendResult.splits`: nothing was placed) is split in halves
    and each half sent again, until the bad number(s) stand alone: those fail, every
    other number is sent. One bad number among n costs about 2·log2(n) more requests;
    failing the n would lose n − 1 good notifications.

    ``attempts`` hold the rows' cap slots (tasks/attempts.py): each request asks them
    whether it may leave just before it is written, and a round whose margin is mostly
    spent before its requests are built is admitted again in one batch first, so its
    calls start with a whole margin.
    """
    groups: dict[tuple[str, Hashable], list[Message]] = defaultdict(list)
    for row in rows:
        provider = rt.providers[row.provider]
        message = Message(
            id=row.id,
            to=row.to,
            template=row.template,
            content=row.content,
            params=tuple(row.params or ()),
            options=dict(row.options or {}),
        )
        groups[(row.provider, provider.batch_key(message))].append(message)
    batches: list[Batch] = []
    for (name, _), messages in groups.items():
        size = rt.providers[name].max_batch
        batches += [(name, messages[i : i + size]) for i in range(0, len(messages), size)]
    # a campaign's calls hold connections only within bulk's share (providers/http.py)
    bulk = any_bulk(rows)
    answers = Answers()
    while batches:
        batches = _place(rt, batches, answers, attempts, bulk)
    return answers


def _ids(batches: Sequence[Batch]) -> list[list[int]]:
    return [[m.id for m in messages] for _, messages in batches]


def _place(
    rt: Runtime,
    batches: Sequence[Batch],
    out: Answers,
    attempts: Attempts | None,
    bulk: bool = False,
) -> list[Batch]:
    """Place one round of requests concurrently, adding their results; returns the
    halves of every request refused whole that must go again."""
    late: list[Batch] = []
    may_write: MayWrite | None = None
    if attempts is not None and attempts.spent([i for ids in _ids(batches) for i in ids]):
        renewed = attempts.renew(_ids(batches))
        late = [b for b, ok in zip(batches, renewed, strict=True) if not ok]
        batches = [b for b, ok in zip(batches, renewed, strict=True) if ok]
    calls, placed = [], []
    for name, messages in batches:
        try:
            calls.append(rt.providers[name].build_send(messages, time.time()))
            placed.append((name, messages))
        except MissingCredentials as exc:
            out.results += [SendResult(m.id, Outcome.ACCOUNT, "config", str(exc)) for m in messages]
    if attempts is not None:
        may_write = attempts.may_write(_ids(placed))
    started = time.perf_counter()
    replies: list[Reply | Failure] = rt.transport.perform_all(calls, may_write=may_write, bulk=bulk)
    elapsed = time.perf_counter() - started
    placed += late
    replies += [_LATE] * len(late)
    again: list[Batch] = []
    for (name, messages), reply in zip(placed, replies, strict=True):
        CALL_LATENCY.labels(name).observe(elapsed)
        if isinstance(reply, Failure):
            out.add_failure(messages, reply)
            continue
        answered = rt.providers[name].send_results(messages, reply)
        if len(messages) > 1 and answered and all(r.splits for r in answered):
            half = len(messages) // 2
            log.info(
                "%s refused a request of %d numbers for a parameter error (%s): "
                "splitting it to find the bad number(s)",
                name,
                len(messages),
                answered[0].code,
            )
            again += [(name, messages[:half]), (name, messages[half:])]
        else:
            out.results += answered
    return again
