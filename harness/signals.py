"""SIGTERM treated as Ctrl-C, for commands that start other processes.

A service manager, ``timeout`` or ``docker stop`` ends a command with SIGTERM, whose
default action kills the process at once: no ``finally`` runs, and every process it
started (a sandbox, an API, workers, beat, a private Redis) is left running as an
orphan. Turned into ``KeyboardInterrupt``, SIGTERM takes the very path Ctrl-C takes, so
whatever cleans up after Ctrl-C cleans up after SIGTERM too.

:func:`die_with_parent` is the second line: a child started with it as ``preexec_fn``
gets SIGTERM from the kernel when the process that started it dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

#: prctl(2) option: the signal a child gets when its parent dies
PR_SET_PDEATHSIG = 1


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Interrupt:
    """Whether SIGTERM arrived inside :func:`sigterm_as_interrupt`'s block.

    The KeyboardInterrupt it raises can land inside a library's own clean-up — SQLAlchemy
    rolling back the transaction it cut short, say — and come out as that library's
    error instead; ``received`` tells the caller it was the interrupt all the same. It
    can also land in a finalizer (a weakref callback run by the garbage collector), where
    Python prints "Exception ignored" and carries on: a loop that waits calls
    :meth:`check` on each turn, so a swallowed SIGTERM still stops it."""

    received = False

    def check(self) -> None:
        """Raise KeyboardInterrupt if SIGTERM arrived (and was perhaps swallowed)."""
        if self.received:
            raise KeyboardInterrupt("SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[Interrupt]:
    """Inside the block (main thread only), SIGTERM raises KeyboardInterrupt."""
    state = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        state.received = True
        _interrupt(signum, frame)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield state
    finally:
        signal.signal(signal.SIGTERM, previous)


def install_sigterm_as_interrupt() -> None:
    """For a whole process (a test session, a benchmark): SIGTERM raises KeyboardInterrupt."""
    signal.signal(signal.SIGTERM, _interrupt)


def die_with_parent() -> None:
    """``preexec_fn`` for a child: SIGTERM when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
