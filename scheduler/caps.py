"""Per-number caps: a strategy (``caps.lua``) over a store (one hash field per number).

Every cap of a provider is checked and the attempt recorded in ONE script call, on
Redis's clock, so any number of workers agree and no two can both take the last slot.
Windows slide (a log of the last attempts, not fixed intervals): "3/minute" means at most
3 in any 60 s, and a refusal says exactly when the tightest cap frees.

An attempt recorded by a copy of a task that then does not send (it lost the race to
mark the row ``sending``, or its request could not leave in time) is taken back with
:meth:`CapLimiter.refund`, so a duplicate never pushes the real send out by a window.

Memory: the log is packed into one string per number (a 6-byte time, then each later
attempt as a varint of milliseconds after the one before; layout in ``caps_codec.lua``),
and the strings of a provider's numbers are the fields of ``BUCKETS`` hashes: a number
is one field of the bucket ``crc32(digits) % BUCKETS``. ``bench/caps.py`` measures
39 bytes of Redis a number with three attempts (25,000 numbers, ~6 a bucket; 29 B at
100,000, ~24 a bucket), against 148 B for a key a number, the layout before.

Why buckets (Redis 7.0, jemalloc; ``used_memory`` over 25,000 numbers). A key a number
cost ~150 B, of which the log was 10: the key's table entry (24 B, a 32-byte
allocation), the key's name (28 characters, 32 B), the value's object (32 B), the entry
in the table of expiring keys (32 B) and a slot in each table (~21 B). A binary key
still cost 133 B, a key without a TTL 90 B. A field of a small hash (a listpack, up to
``hash-max-listpack-entries``, 512, and values up to 64 bytes) costs its bytes and 2
more: the digits as an 8-byte integer (10 B) and the log (12 B), so ~22 B, plus the
bucket's own ~100 B shared by its numbers. A bucket past 512 fields (some 2 million
numbers active within the longest window), or holding a log over 64 bytes (a cap of
more than ~20 attempts), becomes a table: ~75 B a number, still half the old layout.

No TTL: Redis 7.0 has none per field, and a TTL on the bucket would cost a command a
decision (a prototype measured +4 µs of Redis) yet bound nothing while any of its
numbers is active. A field whose newest attempt is older than the longest window (and
no block standing) counts for nothing in any decision, so it may go at any time:
``caps_stale.lua`` drops such fields, from ``caps.lua`` on one new field in 256 (over
that bucket) and from beat's maintenance sweep over every bucket in turn
(:meth:`CapLimiter.sweep`, a slice each sweep: every bucket in ~11 minutes). Memory thus
holds the numbers active within the longest window plus that round, as the TTLs did.

Key layout: ``nq:cap:<provider>:{b<k>}``, field the number's digits; the hash tag is
the bucket, so each script call touches one key and one slot, on a Redis Cluster too.
The key is per E.164 number: the caller normalises (``+86 138…``, ``86138…`` and
``138…`` are one number only after normalisation; this module does not guess).

The layout before (``nq:cap:<provider>:{<digits>}``, a string a number with the longest
window as TTL): no process writes it any more, so what it holds can only expire. For one
longest window after the buckets first ran on a Redis that held such keys
(``LAYOUT_KEY``), each decision also reads the number's old key (one GET, pipelined for
a batch, outside the script: the two keys are on different slots) and the script counts
its attempts and block as the log's own: no number goes over its caps across the
switch. Old workers must be stopped before new ones start (README, Operations).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from zlib import crc32

from redis import Redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from scheduler import scripts
from scheduler.caps_floor import LINEAGE_KEY, CapFloor, floor_args
from scheduler.clock import Clock
from scheduler.limits import Cap

PROVIDER_BLOCK = "provider-block"
#: buckets a provider's numbers are spread over. Fixed, not a setting: every process
#: must put a number in the same bucket, and a changed count would split each number's
#: attempts between two fields (a second layout change, as LAYOUT_KEY handles). 4,096
#: keeps a bucket a listpack (``hash-max-listpack-entries``, 512 by default) up to ~2
#: million numbers active within the longest window, and a bucket's own ~100 B shared
#: by ~6 numbers at 25,000 (module docstring)
BUCKETS = 4096
#: when the buckets first ran on this Redis, and whether keys of the old layout were
#: there then: ``"<ms> <1|0>"``, set once (NX), read once a process
LAYOUT_KEY = "nq:caps:layout"
#: keys of the old layout (digits in the hash tag; a bucket's tag starts with "b")
LEGACY_PATTERN = "nq:cap:*:{[0-9]*}"
#: buckets swept a provider each maintenance turn (tasks/maintenance.py): every bucket
#: in BUCKETS / SWEEP_SLICE turns (64: ~11 minutes at the 10 s sweep interval)
SWEEP_SLICE = 64
#: one script call: its keys and its arguments
_Call = tuple[list[str], Sequence[Any]]
#: seconds before a window that the floor also reads: a call that started then may have
#: left inside it (a request's timeouts are far shorter)
FLOOR_SLACK = 300.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: epoch seconds, Redis's clock, when this decision was made (when allowed: the
    #: attempt's recorded stamp, rounded up to the ms)
    now: float
    #: epoch seconds when the refusing cap frees (None when allowed)
    retry_at: float | None = None
    #: the refusing cap ("3/minute"), or "provider-block" after the provider refused
    cap: str | None = None

    @property
    def stamp_ms(self) -> int | None:
        """What :meth:`CapLimiter.refund` takes back, when an attempt was recorded."""
        return round(self.now * 1000) if self.allowed and self.now else None


@dataclass(frozen=True)
class CapCheck:
    provider: str
    number: str
    caps: Sequence[Cap]


def cap_slot(provider: str, number: str) -> tuple[str, str]:
    """Where a number's log lives: its provider's bucket ``crc32(digits) % BUCKETS``
    (the hash tag is the bucket: one slot a bucket on a Redis Cluster), and its field
    there, the digits (which a listpack keeps as an 8-byte integer)."""
    digits = number.lstrip("+")
    return f"nq:cap:{provider}:{{b{crc32(digits.encode()) % BUCKETS}}}", digits


def legacy_key(provider: str, number: str) -> str:
    """The number's key of the old layout (one key a number, until 2026-12): read, never
    written, for one longest window after the buckets first ran (see LAYOUT_KEY)."""
    return f"nq:cap:{provider}:{{{number.lstrip('+')}}}"


class CapLimiter:
    """Admits attempts against per-number caps; thread-safe (redis-py pools connections).

    With a ``floor`` (scheduler/caps_floor.py), a number whose log may be short after a
    fail-over or a restart is decided on the store's record of its calls as well."""

    def __init__(
        self,
        client: Redis,
        *,
        margin: float = 0.5,
        clock: Clock | None = None,
        floor: CapFloor | None = None,
    ) -> None:
        self.client = client
        self.margin_ms = round(margin * 1000)
        #: under clock control (tests), decisions take the controlled time instead of
        #: Redis's, so a test that moves the clock moves the caps' windows with it
        self.clock = clock if clock is not None and clock.control else None
        #: a cluster has no one place for the lineage mark: its logs are trusted
        # (typed Redis, the way redis-py's own helpers take it: a RedisCluster passes too)
        self.floor = None if isinstance(client, RedisCluster) else floor  # type: ignore[unreachable]
        self._hit = scripts.load(client, "caps")
        self._block = scripts.load(client, "caps_block")
        self._refund = scripts.load(client, "caps_refund")
        self._sweep = scripts.load(client, "caps_sweep")
        #: when the buckets first ran, in ms, if keys of the old layout were there then
        #: (0: none were; None: not read yet): read once (LAYOUT_KEY), on first use
        self._switched_ms: int | None = None
        #: what the last replies said (epoch s): when the lineage began (None: not in
        #: doubt), and the time; a hint only, to send the floor with the first call
        #: while in doubt: the script decides whether it is
        self._began: float | None = None
        self._seen_now = 0.0
        #: per caps tuple (by identity, the tuple kept so its id stays its own): its
        #: _Shape, so a decision builds no argument list of its own
        self._shapes: dict[int, tuple[Sequence[Cap], _Shape]] = {}

    def _shape(self, caps: Sequence[Cap]) -> _Shape:
        """``caps`` as caps.lua takes them, worked out once per tuple of caps (the
        settings parse each provider's once); a list is worked out on every call, as it
        may change."""
        entry = self._shapes.get(id(caps))
        if entry is not None and entry[0] is caps:
            return entry[1]
        shape = _Shape.of(caps, self.margin_ms)
        if isinstance(caps, tuple):
            if len(self._shapes) >= 256:  # caps built afresh per call: keep it bounded
                self._shapes.clear()
            self._shapes[id(caps)] = (caps, shape)
        return shape

    def _longest_ms(self, caps: Sequence[Cap]) -> int:
        return self._shape(caps).longest_ms

    def _args(
        self,
        caps: Sequence[Cap],
        at_us: int | None = None,
        floor: Sequence[int | str] = ("",),
        legacy: bytes = b"",
    ) -> Sequence[int | str | bytes]:
        """After the field: the longest window, the clock ("" = Redis's), the old
        layout's log, the floor (see caps.lua), then (window, amount) per cap, in ms,
        each window widened by the margin here so the script does no more than it must.
        On Redis's clock with no floor nor old log (the common call), the list made
        once, already encoded."""
        shape = self._shape(caps)
        if at_us is None and floor == ("",) and not legacy:
            return shape.plain
        clock = "" if at_us is None else at_us
        return [shape.longest_ms, clock, legacy, *floor, *shape.pairs]

    def hit(
        self, provider: str, number: str, caps: Sequence[Cap], *, at: float | None = None
    ) -> Decision:
        """Check every cap and record the attempt only if all pass. ``at`` (epoch s)
        replaces Redis's clock: for simulated-clock tests only."""
        if not caps:
            return Decision(True, now=0.0)
        if at is None and self.clock is not None:
            at = self.clock.now()
        at_us = None if at is None else round(at * 1_000_000)
        if (self.floor is None or not self.floor.covers(provider)) and not self._legacy_open(caps):
            # one EVALSHA, no pipeline: the cheapest round trip for a single decision
            key, field = cap_slot(provider, number)
            args = self._args(caps, at_us)
            return _decision(self._evalsha(self._hit, (key,), (field, *args)), caps)
        return self._decide([CapCheck(provider, number, caps)], at_us)[0]

    def refund(self, provider: str, number: str, decision: Decision) -> bool:
        """Take back the attempt ``decision`` recorded (it was not used); True if found."""
        stamp = decision.stamp_ms
        if stamp is None:
            return False
        key, field = cap_slot(provider, number)
        return bool(self._evalsha(self._refund, (key,), (field, stamp)))

    def hit_many(self, checks: Sequence[CapCheck]) -> list[Decision]:
        """Many numbers in one round trip; each number's check is still its own atomic call.

        Plain EVALSHA commands in a pipeline, not redis-py's pipelined ``Script`` (which
        asks ``SCRIPT EXISTS`` first: a second round trip on every batch). A Redis that
        lost its scripts answers NOSCRIPT to each call without running it, so those are
        loaded and sent again: nothing is recorded twice.
        """
        todo = [check for check in checks if check.caps]
        at_us = round(self.clock.now() * 1_000_000) if self.clock and todo else None
        decisions = iter(self._decide(todo, at_us))
        return [next(decisions) if check.caps else Decision(True, now=0.0) for check in checks]

    def _decide(self, checks: Sequence[CapCheck], at_us: int | None) -> list[Decision]:
        """Every check in one round trip; those the script is in doubt about (a new
        lineage: scheduler/caps_floor.py) once more with the store's calls, in a second.
        While the last replies said "in doubt", the store is asked first."""
        floors: dict[int, list[int]] = {}
        if self.floor is not None and self._began is not None:
            likely = [
                i
                for i, check in enumerate(checks)
                if self._seen_now * 1000 < self._began * 1000 + self._longest_ms(check.caps)
            ]
            floors = self._floors(checks, likely, self._seen_now)
        legacy = self._legacy_logs(checks)
        calls = [
            self._call(check, at_us, floors.get(i), legacy.get(i, b""))
            for i, check in enumerate(checks)
        ]
        replies = self._evalsha_many(calls)
        doubted = [i for i, reply in enumerate(replies) if _in_doubt(reply)]
        if doubted:
            self._began = int(replies[doubted[0]][1]) / 1000
            now = int(replies[doubted[0]][0]) / 1000
            floors.update(self._floors(checks, doubted, now))
            again = self._evalsha_many(
                [self._call(checks[i], at_us, floors[i], legacy.get(i, b"")) for i in doubted]
            )
            for i, reply in zip(doubted, again, strict=True):
                replies[i] = reply
        decisions = [
            _decision(reply, check.caps) for reply, check in zip(replies, checks, strict=True)
        ]
        if decisions:
            self._seen_now = max(self._seen_now, *(d.now for d in decisions))
            if not doubted and not floors:
                self._began = None
        return decisions

    def _call(
        self, check: CapCheck, at_us: int | None, floor: list[int] | None, legacy: bytes
    ) -> _Call:
        key, field = cap_slot(check.provider, check.number)
        if self.floor is None or not self.floor.covers(check.provider):
            return [key], (field, *self._args(check.caps, at_us, legacy=legacy))
        floor_arg: Sequence[int | str] = ["?"] if floor is None else floor
        return [key, LINEAGE_KEY], (field, *self._args(check.caps, at_us, floor_arg, legacy))

    # -- the old layout, while its keys may hold attempts that count ----------------------

    def _legacy_open(self, caps: Sequence[Cap], *, mark: bool = True) -> bool:
        """Whether a key of the old layout may still hold an attempt inside ``caps``'
        longest window: keys that were there when the buckets first ran, for that
        window (plus FLOOR_SLACK for clocks that disagree) after. They are written no
        more (old workers stop before new ones start), so reading them outside the
        script, without its atomicity, reads what the script would. Without ``mark``
        (a reader: ``caps show``) the switch is not marked: old keys are read while
        no process has marked it."""
        switched = self._switched_ms
        if switched is None:
            found = layout_switch(self.client, mark=mark)
            if found is None:
                return True
            switched = self._switched_ms = found
        if not switched:
            return False
        now = self.clock.now() if self.clock is not None else time.time()
        return now * 1000 < switched + self._longest_ms(caps) + FLOOR_SLACK * 1000

    def _legacy_logs(self, checks: Sequence[CapCheck]) -> dict[int, bytes]:
        """The old layout's log of each check that may still have one (one round trip
        for them all; each GET goes to its own key's node on a cluster)."""
        todo = [i for i, check in enumerate(checks) if self._legacy_open(check.caps)]
        if not todo:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for i in todo:
            pipe.get(legacy_key(checks[i].provider, checks[i].number))
        return {i: raw for i, raw in zip(todo, pipe.execute(), strict=True) if raw}

    def _floors(
        self, checks: Sequence[CapCheck], indices: Sequence[int], now: float
    ) -> dict[int, list[int]]:
        """The store's calls of each of ``checks[indices]`` inside its longest window, as
        caps.lua takes them (one query for them all)."""
        assert self.floor is not None
        indices = [i for i in indices if self.floor.covers(checks[i].provider)]
        if not indices:
            return {}
        longest_ms = max(self._longest_ms(checks[i].caps) for i in indices)
        # a call that started just before the window may have left inside it
        since = now - longest_ms / 1000 - FLOOR_SLACK
        pairs = sorted({(checks[i].provider, checks[i].number) for i in indices})
        found = self.floor.recent(pairs, since)
        return {
            i: floor_args(found.get((checks[i].provider, checks[i].number), ())) for i in indices
        }

    def _evalsha(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One call of ``script``, as the raw command: redis-py's ``Script`` call builds
        a tuple and runs an ``import`` statement on every call (a few µs of this
        process's CPU, as much as the script's own Lua costs Redis), for the NOSCRIPT
        fallback this does too."""
        execute = self.client.execute_command
        try:
            return execute("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            script.sha = cast(str, self.client.script_load(script.script))
            return execute("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]

    def _evalsha_many(self, calls: Sequence[_Call], script: Script | None = None) -> list[Any]:
        if not calls:
            return []
        script = script or self._hit
        if len(calls) == 1:  # one call: not the pipeline's own cost
            return [self._evalsha(script, *calls[0])]
        replies = self._pipeline(script, calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            script.sha = cast(str, self.client.script_load(script.script))
            again = self._pipeline(script, [calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _pipeline(self, script: Script, calls: Sequence[_Call]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            # the raw command, not ``pipe.evalsha``: a RedisCluster pipeline refuses the
            # named method but routes a raw EVALSHA to its key's node (one key a call)
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        return pipe.execute(raise_on_error=False)

    def refund_many(self, taken: Sequence[tuple[CapCheck, Decision]]) -> list[bool]:
        """:meth:`refund` for many attempts in one round trip (each still its own script
        call on its own key)."""
        todo = [(check, decision.stamp_ms) for check, decision in taken]
        calls: list[_Call] = []
        for check, stamp in todo:
            if stamp is not None:
                key, field = cap_slot(check.provider, check.number)
                calls.append(([key], [field, stamp]))
        replies = iter(self._evalsha_many(calls, self._refund))
        return [bool(next(replies)) if stamp is not None else False for _, stamp in todo]

    def readmit(self, taken: Sequence[tuple[CapCheck, Decision]]) -> list[Decision]:
        """Attempts admitted a while ago that only now are about to leave: give each slot
        back and ask again at this moment, so the attempt counts from when it really
        goes. A refusal means another attempt took the room meanwhile: wait for it.
        Two round trips however many: every refund in one, every new hit in the next."""
        self.refund_many(taken)
        return self.hit_many([check for check, _ in taken])

    def state(self, provider: str, number: str, caps: Sequence[Cap]) -> CapState:
        """What the caps hold for one number now, decoded from its field (and, while it
        may still count, its key of the old layout), read only: for an operator asking
        why a number waits (``notifyq caps show``)."""
        raw = cast(bytes | None, self.client.hget(*cap_slot(provider, number)))
        if self.clock is not None:
            now = self.clock.now()
        else:
            seconds, micros = cast(tuple[int, int], self.client.time())
            now = seconds + micros / 1_000_000
        blocked_ms, attempts_ms = decode_log(raw)
        if caps and self._legacy_open(caps, mark=False):
            old = cast(bytes | None, self.client.get(legacy_key(provider, number)))
            old_blocked_ms, old_attempts_ms = decode_log(old)
            blocked_ms = max(blocked_ms, old_blocked_ms)
            attempts_ms = sorted(attempts_ms + old_attempts_ms)
        now_ms = now * 1000
        windows = []
        for cap in caps:
            window = cap.window * 1000 + self.margin_ms
            inside = [at for at in attempts_ms if at > now_ms - window]
            frees_ms = None
            # as caps.lua decides: the amount-th most recent attempt inside the window
            if len(attempts_ms) >= cap.amount:
                decisive = attempts_ms[-cap.amount]
                if decisive > now_ms - window:
                    frees_ms = decisive + window
            windows.append(
                CapWindow(cap, len(inside), None if frees_ms is None else frees_ms / 1000)
            )
        blocked = blocked_ms / 1000 if blocked_ms > now_ms else None
        return CapState(now, tuple(a / 1000 for a in attempts_ms), blocked, tuple(windows))

    def block(self, provider: str, number: str, seconds: float) -> float:
        """The provider refused this number for a cap: try nothing before now + seconds."""
        ms = max(1, round(seconds * 1000))
        key, field = cap_slot(provider, number)
        until = self._evalsha(self._block, (key,), (field, ms))
        return int(until) / 1000

    def sweep(self, provider: str, caps: Sequence[Cap], turn: int) -> int:
        """Drop the stale fields (caps_stale.lua) of ``provider``'s buckets in slice
        ``turn`` (SWEEP_SLICE of them, every bucket once in BUCKETS / SWEEP_SLICE turns),
        one script call a bucket, in one round trip. Beat's maintenance calls it each
        turn (tasks/maintenance.py): a bucket no decision writes is emptied too, so
        memory holds only numbers active within the longest window (plus one round of
        turns). Returns how many fields went."""
        if not caps:
            return 0
        clock = "" if self.clock is None else round(self.clock.now() * 1_000_000)
        first = turn * SWEEP_SLICE % BUCKETS
        args = (self._longest_ms(caps), clock)
        calls: list[_Call] = [
            ([f"nq:cap:{provider}:{{b{k}}}"], args) for k in range(first, first + SWEEP_SLICE)
        ]
        return sum(int(gone) for gone in self._evalsha_many(calls, self._sweep))


@dataclass(frozen=True)
class _Shape:
    """One tuple of caps as caps.lua takes them, in ms, windows widened by the margin."""

    longest_ms: int
    #: window, amount per cap
    pairs: tuple[int, ...]
    #: the whole argument list of a call on Redis's clock with no floor, encoded
    plain: tuple[bytes, ...]

    @classmethod
    def of(cls, caps: Sequence[Cap], margin_ms: int) -> _Shape:
        pairs: list[int] = []
        for cap in caps:
            pairs += [cap.window * 1000 + margin_ms, cap.amount]
        longest = max(pairs[::2])
        plain = (str(longest).encode(), b"", b"", b"", *(str(p).encode() for p in pairs))
        return cls(longest, tuple(pairs), plain)


@dataclass(frozen=True)
class CapWindow:
    cap: Cap
    #: attempts inside the window (widened by the margin, as the script counts them)
    used: int
    #: epoch seconds when this cap admits again, None while it has room
    frees_at: float | None


@dataclass(frozen=True)
class CapState:
    now: float
    #: the attempts the key keeps, epoch seconds, oldest first
    attempts: tuple[float, ...]
    #: the provider's own block on this number, while it stands
    blocked_until: float | None
    windows: tuple[CapWindow, ...]

    @property
    def next_free(self) -> float:
        """The first moment every cap (and any block) admits an attempt."""
        moments = [self.now, self.blocked_until or 0.0]
        moments += [w.frees_at for w in self.windows if w.frees_at is not None]
        return max(moments)


def layout_switch(client: Redis, *, mark: bool = True) -> int | None:
    """When the buckets first ran on this Redis (ms, its clock), if keys of the old layout
    were there then; else 0. The first process to ask looks for such keys (one SCAN,
    stopping at the first) and sets LAYOUT_KEY once (NX): every process reads the same
    answer from then on, and a Redis that never held the old layout never reads it.
    Without ``mark``, None while nothing is marked (and nothing is written)."""
    marked = cast(bytes | None, client.get(LAYOUT_KEY))
    if marked is None and not mark:
        return None
    if marked is None:
        seconds, micros = cast(tuple[int, int], client.time())
        found = next(iter(client.scan_iter(match=LEGACY_PATTERN, count=1000)), None)
        value = f"{seconds * 1000 + micros // 1000} {int(found is not None)}"
        marked = cast(bytes | None, client.set(LAYOUT_KEY, value, nx=True, get=True))
        marked = marked or value.encode()
    switched, old_keys = marked.split()
    return int(switched) if old_keys == b"1" else 0


def decode_log(raw: bytes | None) -> tuple[int, list[int]]:
    """A number's field → (blocked until, in ms or 0; its attempts in ms, oldest first).

    The same reading as ``caps_decode`` in caps_codec.lua (its header has the layout
    and a worked example): an optional 0xFF + 6-byte block, a 6-byte base time, then
    each later attempt as a varint of ms after the one before."""
    if not raw:
        return 0, []
    blocked, pos = 0, 0
    if raw[0] == 0xFF:
        blocked, pos = int.from_bytes(raw[1:7], "big"), 7
    if len(raw) < pos + 6:
        return blocked, []
    at = int.from_bytes(raw[pos : pos + 6], "big")
    attempts = [at]
    delta, shift = 0, 0
    for byte in raw[pos + 6 :]:
        delta |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
        else:
            at += delta
            attempts.append(at)
            delta, shift = 0, 0
    return blocked, attempts


def _in_doubt(reply: Any) -> bool:
    """caps.lua's "the log may be short: send the floor" (cap index -1)."""
    return not isinstance(reply, int) and int(reply[2]) == -1


def _allowed(now: float) -> Decision:
    """``Decision(True, now=now)``, the common answer, made without the four
    ``object.__setattr__`` calls a frozen dataclass's ``__init__`` makes."""
    decision = object.__new__(Decision)
    decision.__dict__.update(allowed=True, now=now, retry_at=None, cap=None)
    return decision


def _decision(reply: int | Sequence[int], caps: Sequence[Cap]) -> Decision:
    if isinstance(reply, int):  # allowed: the script answers with the stamp it recorded
        return _allowed(reply / 1000)
    now_ms, retry_ms, index = (int(x) for x in reply)
    cap = PROVIDER_BLOCK if index == 0 else caps[index - 1].text
    return Decision(False, now=now_ms / 1000, retry_at=retry_ms / 1000, cap=cap)
