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
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from observe.metrics import CALL_LATENCY
from providers.base import Message, MissingCredentials, Outcome, SendResult
from providers.http import LATE, Failure
from scheduler.priority import any_bulk
from tasks.runtime import Runtime

log = logging.getLogger(__name__)

#: one request's worth: a provider name and the messages it carries
Batch = tuple[str, list[Message]]

#: given the ids of each request (one list a request), take their cap slots again now;
#: one new deadline (``time.monotonic()``) a request, or None: that request is not sent
Readmit = Callable[[Sequence[Sequence[int]]], list[float | None]]

_LATE = Failure(sent=False, kind=LATE, detail="could not leave before its deadline")


def call_providers(
    rt: Runtime,
    rows: Sequence[Any],
    *,
    deadline: float | None = None,
    readmit: Readmit | None = None,
) -> list[SendResult]:
    """Group by provider and shared content, build one call per group (signed now),
    place them all concurrently, and turn every answer into results.

    A request of several numbers that the provider refused whole for a parameter error
    (:attr:`~providers.base.SendResult.splits`: nothing was placed) is split in halves
    and each half sent again, until the bad number(s) stand alone: those fail, every
    other number is sent. One bad number among n costs about 2·log2(n) more requests;
    failing the n would lose n − 1 good notifications.

    ``deadline`` (``time.monotonic()``): what has not left by then is admitted again
    through ``readmit`` (a new deadline, or None: not sent, ``net:Late``; see
    :mod:`providers.http`). A round whose deadline is already mostly spent before its
    requests are built (a long ``sending`` commit, a split after a whole round trip)
    is admitted again in one batch first, so its calls start with a whole margin.
    """
    groups: dict[tuple[str, Any], list[Message]] = defaultdict(list)
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
    results: list[SendResult] = []
    while batches:
        batches = _place(rt, batches, results, deadline, readmit, bulk)
    return results


def _place(
    rt: Runtime,
    batches: Sequence[Batch],
    results: list[SendResult],
    deadline: float | None,
    readmit: Readmit | None,
    bulk: bool = False,
) -> list[Batch]:
    """Place one round of requests concurrently, adding their results; returns the
    halves of every request refused whole that must go again."""
    late: list[Batch] = []
    spent = deadline is not None and deadline - time.monotonic() < rt.settings.cap_margin / 2
    if spent and readmit is not None:
        assert deadline is not None
        batches, late, deadline = _readmit_round(batches, deadline, readmit)
    calls, placed = [], []
    for name, messages in batches:
        try:
            calls.append(rt.providers[name].build_send(messages, time.time()))
            placed.append((name, messages))
        except MissingCredentials as exc:
            results += [SendResult(m.id, Outcome.ACCOUNT, "config", str(exc)) for m in messages]
    started = time.perf_counter()
    asks = partial(_ask, readmit, placed) if readmit is not None else None
    answers: list[Any] = rt.transport.perform_all(calls, deadline=deadline, readmit=asks, bulk=bulk)
    elapsed = time.perf_counter() - started
    placed += late
    answers += [_LATE] * len(late)
    again: list[Batch] = []
    for (name, messages), answer in zip(placed, answers, strict=True):
        CALL_LATENCY.labels(name).observe(elapsed)
        if isinstance(answer, Failure):
            outcome = Outcome.AMBIGUOUS if answer.sent else Outcome.TRANSIENT
            results += [SendResult(m.id, outcome, answer.code, answer.detail) for m in messages]
            continue
        answered = rt.providers[name].send_results(messages, answer)
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
            results += answered
    return again


def _readmit_round(
    batches: Sequence[Batch], deadline: float, readmit: Readmit
) -> tuple[list[Batch], list[Batch], float]:
    """Admit a whole round again before it is built: (requests that may go, requests
    whose numbers were taken meanwhile, the deadline of those that go)."""
    answers = readmit([[m.id for m in messages] for _, messages in batches])
    going = [b for b, answer in zip(batches, answers, strict=True) if answer is not None]
    late = [b for b, answer in zip(batches, answers, strict=True) if answer is None]
    fresh = [answer for answer in answers if answer is not None]
    return going, late, min(fresh) if fresh else deadline


def _ask(readmit: Readmit, placed: Sequence[Batch], positions: Sequence[int]) -> list[float | None]:
    """The transport's readmit (positions among the calls) in terms of ids."""
    return readmit([[m.id for m in placed[p][1]] for p in positions])
