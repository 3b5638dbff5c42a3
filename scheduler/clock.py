"""One clock for every host: Redis's ``TIME``, plus an offset that tests may move.

Why it exists. Every decision of *when* — a calling window, the moment a deferred
notification is due, a campaign's start — is taken on one clock, Redis's, so that
workers on hosts whose clocks disagree still agree on it (the caps and rates scripts read
``TIME`` inside Redis for the same reason). And the behaviour worth testing is often the
waiting itself: "the window opens in an hour; nothing is called before it, the call goes
at it". A test cannot wait an hour, and "opens in 6 s" is a race on a loaded machine,
where starting the workers alone may take longer. So the clock takes an *offset*: a test
places the moment far enough ahead that no start-up can reach it, checks that nothing
happened, then moves the clock to it with :meth:`Clock.advance` — a control, not a sleep.

The offset is honoured only when ``clock_control`` is on (``NOTIFYQ_CLOCK_CONTROL=true``;
off by default, and never meant for production). It lives in Redis at :data:`OFFSET_KEY`,
so every process on the same Redis sees the same time, and it is read in the same round
trip as ``TIME`` (``clock.lua``). With control off, :meth:`Clock.now` is a single ``TIME``
and the key is never read: production pays nothing for it.

Scripts that read ``TIME`` themselves and must agree with this clock (the deferred set's
release) take :attr:`Clock.keys` as extra keys and add the offset they find there.
"""

from __future__ import annotations

from typing import cast

from redis import Redis

from scheduler import scripts

#: seconds (a float) added to Redis's time while clock control is on
OFFSET_KEY = "nq:clock:offset"


class ClockControlOff(RuntimeError):
    """The clock was asked to move, but this process does not honour an offset."""


class Clock:
    def __init__(self, client: Redis, *, control: bool = False, key: str = OFFSET_KEY) -> None:
        self.client = client
        self.control = control
        self.key = key
        self._read = scripts.load(client, "clock") if control else None

    @property
    def keys(self) -> list[str]:
        """Extra keys for a script that reads ``TIME`` and must add the offset (none when off)."""
        return [self.key] if self.control else []

    def now(self) -> float:
        """Epoch seconds on Redis's clock, plus the offset when clock control is on."""
        if self._read is None:
            seconds, micros = cast(tuple[int, int], self.client.time())
            return seconds + micros / 1_000_000
        read_s, read_us, offset = cast(list[bytes], self._read(keys=[self.key]))
        return int(read_s) + int(read_us) / 1_000_000 + float(offset)

    def offset(self) -> float:
        """The offset in force (0 when control is off or none was set)."""
        if not self.control:
            return 0.0
        value = cast(bytes | None, self.client.get(self.key))
        return float(value) if value is not None else 0.0

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` for every process on this Redis; the new
        offset. Never backwards: a clock that goes back would re-open closed windows."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._require_control()
        return float(cast(float, self.client.incrbyfloat(self.key, seconds)))

    def advance_to(self, moment: float) -> float:
        """Move the clock forward so that it reads ``moment`` now (nothing if already past)."""
        return self.advance(max(0.0, moment - self.now()))

    def reset(self) -> None:
        """Back to Redis's own time."""
        self._require_control()
        self.client.delete(self.key)

    def _require_control(self) -> None:
        if not self.control:
            raise ClockControlOff(
                "clock control is off: set NOTIFYQ_CLOCK_CONTROL=true (tests only) to move it"
            )
