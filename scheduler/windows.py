"""Calling windows: the hours of the day, in a time zone, during which a call may start.

``"09:00-21:00"`` opens at 09:00 and closes at 21:00 local time; a window whose end is
before its start (``"21:00-09:00"``) runs over midnight; ``"00:00-24:00"`` and the empty
string mean always. The next opening is computed on local dates and converted back,
so it is right across midnight and across daylight-saving changes (a local opening time
that does not exist on a spring-forward day opens at the first instant after the gap,
03:00 for a 02:30 opening in New York; an opening that a fall-back day shows twice
opens at its first occurrence).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

#: HH:MM-HH:MM (the contract); seconds are accepted too (HH:MM:SS), for short demos and tests
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*-\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")


class WindowSyntaxError(ValueError):
    """A window setting that is not ``HH:MM-HH:MM``."""


@dataclass(frozen=True)
class CallingWindow:
    start: time
    #: ``None`` stands for 24:00, the end of the day
    end: time | None
    zone: ZoneInfo

    def __str__(self) -> str:
        def text(moment: time) -> str:
            return moment.strftime("%H:%M:%S" if moment.second else "%H:%M")

        end = "24:00" if self.end is None else text(self.end)
        return f"{text(self.start)}-{end} {self.zone.key}"

    def in_zone(self, zone: ZoneInfo) -> CallingWindow:
        return CallingWindow(self.start, self.end, zone)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.zone).time()
        if self.end is None:
            return local >= self.start
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_opening(self, at: datetime) -> datetime:
        """``at`` itself when open, else the first later instant at which it opens."""
        if self.is_open(at):
            return at
        local_day = at.astimezone(self.zone).date()
        for offset in range(3):
            naive = datetime.combine(local_day + timedelta(days=offset), self.start)
            first = naive.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
            second = naive.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
            # an ordinary local time (first == second), or one that a fall-back day shows
            # twice (first < second): its first occurrence. A time that a spring-forward
            # gap swallowed reads as first > second (fold=0 takes the offset before the
            # change, fold=1 the one after): the window opens when the gap ends.
            opening = first if first <= second else _gap_end(second, first, self.zone)
            if opening > at and self.is_open(opening):
                return opening
        raise AssertionError(f"window {self} never opens after {at}")  # unreachable


def _gap_end(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first second with the new UTC offset between ``before`` and ``after``.

    Offsets change on whole seconds, so a bisection on whole seconds finds the change
    exactly (about a dozen steps for a one-hour gap).
    """
    low, high = int(before.timestamp()), int(after.timestamp())
    old = before.astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == old:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def parse_window(text: str | None, zone: ZoneInfo) -> CallingWindow | None:
    if not text or not text.strip():
        return None
    match = _WINDOW.match(text)
    if not match:
        raise WindowSyntaxError(f"{text!r} is not a window like '09:00-21:00'")
    h1, m1, s1, h2, m2, s2 = (int(g or 0) for g in match.groups())
    if h1 > 23 or max(m1, m2, s1, s2) > 59 or h2 > 24 or (h2 == 24 and (m2 or s2)):
        raise WindowSyntaxError(f"{text!r} has an hour, minute or second out of range")
    start = time(h1, m1, s1)
    end = None if h2 == 24 else time(h2, m2, s2)
    if end is None and start == time(0, 0):
        return None  # 00:00-24:00: always open
    if end == start:
        raise WindowSyntaxError(f"{text!r} opens and closes at the same minute")
    return CallingWindow(start, end, zone)


def next_opening_all(windows: Sequence[CallingWindow], at: datetime) -> datetime | None:
    """The first instant from ``at`` at which every window is open (a number spanning
    several time zones); ``None`` if they share no hour in the coming week."""
    moment = at
    for _ in range(64):
        later = max(window.next_opening(moment) for window in windows)
        if later == moment:
            return moment
        moment = later
        if moment - at > timedelta(days=7):
            return None
    return None
