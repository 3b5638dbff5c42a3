"""``notifyq caps show NUMBER``: a number's cap state decoded from its Redis key, the
same reading the Lua scripts make, and the byte format the Lua header documents."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import redis

from scheduler.caps import CapLimiter, decode_log
from scheduler.limits import parse_caps
from tests.services import redis_now, run_notifyq

IHUYI = parse_caps("1/second;3/minute;10/day")
NUMBER = "+8613800138000"
CODEC = Path(__file__).resolve().parents[2] / "scheduler" / "caps_codec.lua"


def test_the_worked_example_in_the_lua_header_decodes_as_it_says() -> None:
    header = CODEC.read_text()
    line = re.search(
        r"^--\s+((?:[0-9A-F]{2} ?)+\|(?: [0-9A-F]{2})+ \|(?: [0-9A-F]{2})+)$", header, re.M
    )
    assert line, "the worked example's bytes are in caps_codec.lua's header"
    raw = bytes.fromhex(line[1].replace("|", ""))
    stamps = re.search(r"attempts at (\d+), \+(\d+) ms and \+(\d+) ms", header)
    assert stamps
    base, first, second = (int(x) for x in stamps.groups())
    assert decode_log(raw) == (0, [base, base + first, base + first + second])


def test_a_block_header_is_read_before_the_log() -> None:
    raw = b"\xff" + (1_764_633_700_000).to_bytes(6, "big") + (1_764_633_600_000).to_bytes(6, "big")
    assert decode_log(raw) == (1_764_633_700_000, [1_764_633_600_000])
    assert decode_log(None) == (0, [])


def test_state_counts_each_window_and_says_when_the_full_one_frees(client: redis.Redis) -> None:
    caps = CapLimiter(client, margin=0.5)
    now = redis_now(client)
    for ago in (30.0, 20.0, 10.0):  # three calls in the last minute, seconds apart
        assert caps.hit("ihuyi", NUMBER, IHUYI, at=now - ago).allowed
    state = caps.state("ihuyi", NUMBER, IHUYI)
    by_cap = {w.cap.text: w for w in state.windows}
    assert [by_cap[c].used for c in ("1/second", "3/minute", "10/day")] == [0, 3, 3]
    assert by_cap["1/second"].frees_at is None and by_cap["10/day"].frees_at is None
    # the oldest of the three leaves the minute (plus the margin) 30.5 s from now
    assert by_cap["3/minute"].frees_at == pytest.approx(now - 30.0 + 60.5, abs=0.002)
    assert state.next_free == by_cap["3/minute"].frees_at
    # and the script agrees: refused until exactly then
    refused = caps.hit("ihuyi", NUMBER, IHUYI)
    assert (refused.allowed, refused.cap) == (False, "3/minute")
    assert refused.retry_at == pytest.approx(state.next_free, abs=0.002)


def test_a_provider_block_shows_and_sets_the_next_free_moment(client: redis.Redis) -> None:
    caps = CapLimiter(client, margin=0.5)
    until = caps.block("ihuyi", NUMBER, 600)
    state = caps.state("ihuyi", NUMBER, IHUYI)
    assert state.blocked_until == pytest.approx(until, abs=0.002)
    assert state.next_free == state.blocked_until
    assert all(w.used == 0 for w in state.windows)


def test_the_command_shows_a_number_masked_with_its_windows(
    client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    caps = CapLimiter(client, margin=0.5)
    now = redis_now(client)
    caps.hit("ihuyi", NUMBER, IHUYI, at=now - 5.0)
    env = {**os.environ, "NOTIFYQ_REDIS_URL": redis_url, "NOTIFYQ_CAPS_REDIS_URL": ""}
    shown = run_notifyq(
        "caps", "show", "138 0013 8000", "--provider", "ihuyi", "--json", env=env, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["to"] == "138****8000" and "13800138000" not in shown.stdout
    (ihuyi,) = report["providers"]
    assert [(c["cap"], c["used"]) for c in ihuyi["caps"]] == [
        ("1/second", 0),
        ("3/minute", 1),
        ("10/day", 1),
    ]
    assert ihuyi["free_now"] is True and len(ihuyi["attempts"]) == 1
    refused = run_notifyq("caps", "show", "not-a-number", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and "NUMBER" in refused.stderr
