"""Calling windows: open or closed, the next opening across midnight and across
daylight-saving changes, several zones at once, and what a setting may not say."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.windows import CallingWindow, WindowSyntaxError, next_opening_all, parse_window

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def local(zone: ZoneInfo, *fields: int, fold: int = 0) -> datetime:
    """A local wall-clock time as an aware UTC instant (what callers pass)."""
    return datetime(*fields, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


def window(text: str, zone: ZoneInfo = SHANGHAI) -> CallingWindow:
    parsed = parse_window(text, zone)
    assert parsed is not None
    return parsed


# -- parsing ---------------------------------------------------------------------------


def test_a_window_parses_to_its_hours_and_zone() -> None:
    parsed = window("09:00-21:00")
    assert (parsed.start, parsed.end, parsed.zone) == (time(9), time(21), SHANGHAI)
    assert str(parsed) == "09:00-21:00 Asia/Shanghai"
    assert str(window(" 9:30 - 24:00 ")) == "09:30-24:00 Asia/Shanghai"


@pytest.mark.parametrize("text", [None, "", "   ", "00:00-24:00"])
def test_no_window_or_the_whole_day_means_always(text: str | None) -> None:
    assert parse_window(text, SHANGHAI) is None


@pytest.mark.parametrize(
    "text",
    ["9-21", "09:00", "09:00-21", "abc", "09:00–21:00", "9:0-21:00", "09:00-21:00-22:00"],
)
def test_a_window_that_does_not_read_as_hh_mm_is_refused(text: str) -> None:
    with pytest.raises(WindowSyntaxError, match="is not a window"):
        parse_window(text, SHANGHAI)


@pytest.mark.parametrize(
    "text", ["24:00-09:00", "25:00-26:00", "09:60-10:00", "09:00-10:61", "09:00-24:30"]
)
def test_an_hour_or_minute_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(WindowSyntaxError, match="out of range"):
        parse_window(text, SHANGHAI)


def test_a_window_that_opens_and_closes_at_once_is_refused() -> None:
    with pytest.raises(WindowSyntaxError, match="same minute"):
        parse_window("10:00-10:00", SHANGHAI)
    assert issubclass(WindowSyntaxError, ValueError)


# -- open, closed, next opening ----------------------------------------------------------


def test_open_from_the_start_minute_and_closed_from_the_end_minute() -> None:
    day = window("09:00-21:00")
    assert not day.is_open(local(SHANGHAI, 2024, 5, 1, 8, 59, 59))
    assert day.is_open(local(SHANGHAI, 2024, 5, 1, 9, 0))
    assert day.is_open(local(SHANGHAI, 2024, 5, 1, 20, 59, 59))
    assert not day.is_open(local(SHANGHAI, 2024, 5, 1, 21, 0))


def test_an_open_window_answers_now_and_a_closed_one_its_next_start() -> None:
    day = window("09:00-21:00")
    noon = local(SHANGHAI, 2024, 5, 1, 12, 0)
    assert day.next_opening(noon) == noon
    assert day.next_opening(local(SHANGHAI, 2024, 5, 1, 7, 15)) == local(SHANGHAI, 2024, 5, 1, 9)


def test_after_closing_the_next_opening_is_tomorrow_across_midnight() -> None:
    day = window("09:00-21:00")
    tomorrow_nine = local(SHANGHAI, 2024, 5, 2, 9)
    assert day.next_opening(local(SHANGHAI, 2024, 5, 1, 21, 0)) == tomorrow_nine
    assert day.next_opening(local(SHANGHAI, 2024, 5, 1, 23, 59)) == tomorrow_nine
    # and across the end of a month and a year
    assert day.next_opening(local(SHANGHAI, 2024, 12, 31, 22)) == local(SHANGHAI, 2025, 1, 1, 9)


def test_a_window_that_wraps_midnight_is_open_late_and_early() -> None:
    night = window("21:00-09:00")
    assert night.is_open(local(SHANGHAI, 2024, 5, 1, 23, 30))
    assert night.is_open(local(SHANGHAI, 2024, 5, 2, 0, 0))
    assert night.is_open(local(SHANGHAI, 2024, 5, 2, 8, 59))
    assert not night.is_open(local(SHANGHAI, 2024, 5, 2, 9, 0))
    assert night.next_opening(local(SHANGHAI, 2024, 5, 2, 9, 0)) == local(SHANGHAI, 2024, 5, 2, 21)
    assert night.next_opening(local(SHANGHAI, 2024, 5, 2, 20, 59)) == local(
        SHANGHAI, 2024, 5, 2, 21
    )


def test_a_window_to_24_00_is_open_until_midnight_and_not_after() -> None:
    evening = window("22:00-24:00")
    assert evening.end is None
    assert evening.is_open(local(SHANGHAI, 2024, 5, 1, 23, 59, 59))
    assert not evening.is_open(local(SHANGHAI, 2024, 5, 2, 0, 0))
    assert evening.next_opening(local(SHANGHAI, 2024, 5, 2, 0, 0)) == local(
        SHANGHAI, 2024, 5, 2, 22
    )


# -- daylight saving (America/New_York) --------------------------------------------------


def test_spring_forward_moves_the_opening_in_utc_by_an_hour() -> None:
    day = window("09:00-21:00", NEW_YORK)
    # 2024-03-10: clocks jump from 02:00 EST to 03:00 EDT
    saturday = day.next_opening(datetime(2024, 3, 9, 5, 0, tzinfo=UTC))
    sunday = day.next_opening(datetime(2024, 3, 10, 5, 0, tzinfo=UTC))
    assert saturday == datetime(2024, 3, 9, 14, 0, tzinfo=UTC)  # 09:00 EST
    assert sunday == datetime(2024, 3, 10, 13, 0, tzinfo=UTC)  # 09:00 EDT
    assert sunday - saturday == timedelta(hours=23)


def test_an_opening_time_the_spring_forward_gap_swallows_opens_when_the_gap_ends() -> None:
    early = window("02:30-21:00", NEW_YORK)
    midnight = local(NEW_YORK, 2024, 3, 10, 0, 0)
    opening = early.next_opening(midnight)
    assert opening == datetime(2024, 3, 10, 7, 0, tzinfo=UTC)  # 03:00 EDT, not 03:30
    assert opening.astimezone(NEW_YORK).hour == 3
    assert not early.is_open(opening - timedelta(seconds=1))  # 01:59:59 EST
    # a window wholly inside the gap does not open that day at all
    lost = window("02:05-02:55", NEW_YORK)
    assert lost.next_opening(midnight) == local(NEW_YORK, 2024, 3, 11, 2, 5)


def test_an_opening_time_fall_back_shows_twice_opens_at_its_first_occurrence() -> None:
    early = window("01:30-21:00", NEW_YORK)
    # 2024-11-03: 01:00-02:00 happens twice, EDT then EST
    opening = early.next_opening(local(NEW_YORK, 2024, 11, 3, 0, 0))
    assert opening == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    day = window("09:00-21:00", NEW_YORK)
    assert day.next_opening(datetime(2024, 11, 3, 5, 0, tzinfo=UTC)) == datetime(
        2024, 11, 3, 14, 0, tzinfo=UTC
    )  # 09:00 EST


def test_during_the_repeated_hour_local_wall_time_decides() -> None:
    late = window("21:00-01:30", NEW_YORK)
    assert late.is_open(local(NEW_YORK, 2024, 11, 3, 1, 15, fold=0))
    assert late.is_open(local(NEW_YORK, 2024, 11, 3, 1, 15, fold=1))
    assert not late.is_open(local(NEW_YORK, 2024, 11, 3, 1, 45, fold=1))


# -- several zones -----------------------------------------------------------------------


def test_several_zones_open_together_at_the_latest_opening() -> None:
    """A number whose zones are New York and Los Angeles: both must be in hours."""
    hours = window("09:00-21:00", NEW_YORK)
    both = [hours, hours.in_zone(LOS_ANGELES)]
    noon_utc = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)  # 08:00 EDT, 05:00 PDT
    assert next_opening_all(both, noon_utc) == datetime(2024, 7, 1, 16, 0, tzinfo=UTC)
    open_in_both = datetime(2024, 7, 1, 18, 0, tzinfo=UTC)
    assert next_opening_all(both, open_in_both) == open_in_both
    # after New York closes (01:00 UTC) the next shared hour is tomorrow's 16:00 UTC
    assert next_opening_all(both, datetime(2024, 7, 2, 2, 0, tzinfo=UTC)) == datetime(
        2024, 7, 2, 16, 0, tzinfo=UTC
    )


def test_zones_that_share_no_hour_give_none() -> None:
    hours = window("09:00-21:00", SHANGHAI)
    # Shanghai 09-21 is 01-13 UTC; New York (EDT) 09-21 is 13-01 UTC: they only touch
    assert (
        next_opening_all([hours, hours.in_zone(NEW_YORK)], datetime(2024, 7, 1, tzinfo=UTC)) is None
    )


def test_one_zone_is_its_own_next_opening() -> None:
    hours = window("09:00-21:00")
    at = local(SHANGHAI, 2024, 5, 1, 22)
    assert next_opening_all([hours], at) == hours.next_opening(at)


# -- properties ------------------------------------------------------------------------

ZONES = [SHANGHAI, NEW_YORK, LOS_ANGELES, ZoneInfo("Europe/London"), ZoneInfo("Australia/Sydney")]


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(0, 24 * 60 - 1),
    end=st.integers(1, 24 * 60),
    zone=st.sampled_from(ZONES),
    at=st.datetimes(
        min_value=datetime(2024, 1, 1), max_value=datetime(2025, 12, 31), timezones=st.just(UTC)
    ),
)
def test_the_next_opening_is_open_not_earlier_than_asked_and_opens_right_then(
    start: int, end: int, zone: ZoneInfo, at: datetime
) -> None:
    text = f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    if start == end:
        return
    hours = parse_window(text, zone)
    if hours is None:
        return
    opening = hours.next_opening(at)
    assert opening >= at
    assert hours.is_open(opening)
    assert opening == at or not hours.is_open(opening - timedelta(seconds=1))
    assert opening - at <= timedelta(days=2)


# -- with a controlled clock (time-machine): the window as a worker sees it, reading now ------


@pytest.mark.parametrize(
    ("now_utc", "opens_utc"),
    [
        ("2026-11-27T00:30:00Z", "2026-11-27T01:00:00Z"),  # 08:30 Beijing: opens at 09:00
        ("2026-11-27T05:00:00Z", "2026-11-27T05:00:00Z"),  # 13:00: open now
        ("2026-11-27T13:00:00Z", "2026-11-28T01:00:00Z"),  # 21:00 sharp: closed until tomorrow
        ("2026-11-27T16:30:00Z", "2026-11-28T01:00:00Z"),  # 00:30 next day, across midnight
    ],
)
def test_jumdata_window_on_a_travelling_clock(now_utc: str, opens_utc: str) -> None:
    window = parse_window("09:00-21:00", ZoneInfo("Asia/Shanghai"))
    assert window is not None
    with time_machine.travel(datetime.fromisoformat(now_utc), tick=False):
        opening = window.next_opening(datetime.now(UTC))
    assert opening == datetime.fromisoformat(opens_utc)


def test_a_new_york_window_across_the_spring_forward_night_on_a_travelling_clock() -> None:
    window = parse_window("09:00-21:00", ZoneInfo("America/New_York"))
    assert window is not None
    # 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT; 21:30 EST the evening before
    with time_machine.travel(datetime(2026, 3, 8, 2, 30, tzinfo=UTC), tick=False):
        opening = window.next_opening(datetime.now(UTC))
    assert opening == datetime(2026, 3, 8, 13, 0, tzinfo=UTC), "09:00 EDT is 13:00 UTC"
