"""Cap notation: what parses, to what, and what must stop the process at start-up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.limits import UNIT_SECONDS, Cap, CapSyntaxError, parse_cap, parse_caps


def test_the_ihuyi_caps_parse_to_three_sliding_windows() -> None:
    assert parse_caps("1/second;3/minute;10/day") == (
        Cap(window=1, amount=1, text="1/second"),
        Cap(window=60, amount=3, text="3/minute"),
        Cap(window=86400, amount=10, text="10/day"),
    )


def test_caps_come_back_ordered_by_window_whatever_the_order_written() -> None:
    assert [c.text for c in parse_caps("10/day, 1/second ;3/minute")] == [
        "1/second",
        "3/minute",
        "10/day",
    ]


@pytest.mark.parametrize(
    ("text", "window", "amount", "label"),
    [
        ("3/2 minutes", 120, 3, "3/2 minutes"),
        ("3 / 2minute", 120, 3, "3/2 minutes"),
        ("5 per hour", 3600, 5, "5/hour"),
        ("2/seconds", 1, 2, "2/second"),
        ("4/MINUTE", 60, 4, "4/minute"),
        ("  7/day  ", 86400, 7, "7/day"),
        ("1/1 day", 86400, 1, "1/day"),
    ],
)
def test_the_limits_notation_variants_read_as_expected(
    text: str, window: int, amount: int, label: str
) -> None:
    cap = parse_cap(text)
    assert (cap.window, cap.amount, cap.text, str(cap)) == (window, amount, label, label)


@pytest.mark.parametrize("text", [None, "", "   ", ";", " ; , "])
def test_nothing_written_means_no_caps(text: str | None) -> None:
    assert parse_caps(text) == ()


@pytest.mark.parametrize(
    "text",
    [
        "3/fortnight",
        "three/minute",
        "3",
        "/minute",
        "3/",
        "0/second",
        "3/0 seconds",
        "-1/second",
        "1.5/second",
        "3/minute 10/day",
    ],
)
def test_a_typo_is_an_error_never_no_cap(text: str) -> None:
    with pytest.raises(CapSyntaxError):
        parse_caps(text)


@pytest.mark.parametrize("text", ["1/second;2/second", "1/minute;5/60 seconds", "2/day;9/24 hours"])
def test_two_caps_on_one_window_are_refused(text: str) -> None:
    with pytest.raises(CapSyntaxError, match="share one window"):
        parse_caps(text)


def test_a_cap_syntax_error_is_a_value_error_for_settings_validation() -> None:
    assert issubclass(CapSyntaxError, ValueError)


@given(
    amount=st.integers(1, 10_000),
    multiple=st.integers(1, 500),
    unit=st.sampled_from(sorted(UNIT_SECONDS)),
)
def test_any_written_cap_parses_and_its_label_parses_back_to_it(
    amount: int, multiple: int, unit: str
) -> None:
    cap = parse_cap(f"{amount}/{multiple} {unit}s")
    assert cap.window == multiple * UNIT_SECONDS[unit]
    assert cap.amount == amount
    assert parse_cap(cap.text) == cap
