"""One dependency's outage as one process sees it: one WARNING when it goes, one INFO
when it is back, whatever number of requests or tasks meet it in between.

A process that logs every failure of a dependency that is simply away (the store
restarting, a Redis failing over) buries what matters under a traceback a second.
:class:`Outage` turns those failures into two lines: the first failure logs a WARNING
with its reason and starts one thread that probes the dependency each
``interval``; the probe's first success logs an INFO with how long it lasted, and the
next failure is a new outage.

:class:`QuietOutages` is the logging side: a filter on the process's handler that hands
a record carrying such a failure to its :class:`Outage` and drops the record, so
libraries that log every failure with its traceback (Celery's "Task … raised
unexpected") say it once.

This module knows no dependency: what counts as "away" and how to probe come in as
callables (store/availability.py, scheduler/availability.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

#: seconds between probes while a dependency is away
PROBE_INTERVAL = 1.0


def first_line(error: BaseException) -> str:
    """An error in one line: its type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class Outage:
    """Whether ``name`` is away for this process, told once each way (see the module)."""

    def __init__(
        self,
        name: str,
        probe: Callable[[], object],
        *,
        interval: float = PROBE_INTERVAL,
        logger: logging.Logger = log,
    ) -> None:
        self.name = name
        self.probe = probe
        self.interval = interval
        self.logger = logger
        self._lock = threading.Lock()
        self._since: float | None = None
        self._stop = threading.Event()

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: BaseException | str) -> None:
        """A failure met: the first of an outage is logged and starts the probe."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        reason = error if isinstance(error, str) else first_line(error)
        self.logger.warning("%s is unavailable (%s): waiting for it", self.name, reason)
        threading.Thread(target=self._watch, name=f"outage-{self.name}", daemon=True).start()

    def recovered(self) -> None:
        """The dependency answered: the end of the outage, if there was one, is logged."""
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            self.logger.info(
                "%s is back after %.1f s of outage", self.name, time.monotonic() - since
            )

    def close(self) -> None:
        """Stop probing (a process shutting down)."""
        self._stop.set()

    def _watch(self) -> None:
        while self.down and not self._stop.wait(self.interval):
            if self._answers():
                self.recovered()

    def _answers(self) -> bool:
        try:
            self.probe()
        except Exception:  # still away: said once already, the next probe will tell
            return False
        return True


class QuietOutages(logging.Filter):
    """Drops a record whose exception means a watched dependency is away, after telling
    that dependency's :class:`Outage` (which logs it once)."""

    def __init__(self, watches: Sequence[tuple[Outage, Callable[[BaseException], bool]]]) -> None:
        super().__init__()
        self.watches = list(watches)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or record.name == log.name:
            return True
        for outage, away in self.watches:
            if away(error):
                outage.failed(error)
                return False
        return True


def quiet_on_root(
    watches: Sequence[tuple[Outage, Callable[[BaseException], bool]]],
) -> QuietOutages:
    """:class:`QuietOutages` on every handler of the root logger (a filter on a logger
    would not see what its children log)."""
    quiet = QuietOutages(watches)
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    return quiet
