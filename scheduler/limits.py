"""Cap notation, as the ``limits`` library writes it: ``"1/second;3/minute;10/day"``.

A cap is "at most ``amount`` in any window of ``window`` seconds" (a sliding window).
``"3/2 minutes"`` is accepted too. Parsing is strict: a typo in a cap setting must stop
the process at start-up, never silently become "no cap".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
}

_ONE = re.compile(
    r"^\s*(?P<amount>\d+)\s*(?:/|per)\s*(?:(?P<multiple>\d+)\s*)?(?P<unit>second|minute|hour|day)s?\s*$",
    re.IGNORECASE,
)


class CapSyntaxError(ValueError):
    """A cap string that does not read as ``N/unit``."""


@dataclass(frozen=True, order=True)
class Cap:
    """At most ``amount`` events in any sliding window of ``window`` seconds."""

    window: int
    amount: int
    text: str

    def __str__(self) -> str:
        return self.text


def parse_cap(text: str) -> Cap:
    match = _ONE.match(text)
    if not match:
        raise CapSyntaxError(f"{text!r} is not a cap like '3/minute'")
    amount = int(match["amount"])
    multiple = int(match["multiple"] or 1)
    unit = match["unit"].lower()
    if amount < 1 or multiple < 1:
        raise CapSyntaxError(f"{text!r}: amount and window must be at least 1")
    label = f"{amount}/{unit}" if multiple == 1 else f"{amount}/{multiple} {unit}s"
    return Cap(window=multiple * UNIT_SECONDS[unit], amount=amount, text=label)


def parse_caps(text: str | None) -> tuple[Cap, ...]:
    """``"1/second;3/minute"`` → caps ordered by window; empty or None → no caps."""
    if not text or not text.strip():
        return ()
    caps = sorted(parse_cap(part) for part in re.split(r"[;,]", text) if part.strip())
    windows = [cap.window for cap in caps]
    if len(set(windows)) != len(windows):
        raise CapSyntaxError(f"{text!r}: two caps share one window")
    return tuple(caps)
