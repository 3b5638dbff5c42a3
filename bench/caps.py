"""How fast and how small the per-number caps are, against what else one could use.

One run, one Redis (a private ``redis-server`` started here on a free port, no
persistence, unless ``--redis-url`` is given: then only this run's own keys are
touched), the three ihuyi caps (``1/second;3/minute;10/day``) over distinct numbers.
Round r is every number's r-th attempt, seconds apart, so each is allowed and recorded
(the write path; round 1 meets empty fields, rounds 2 and 3 decode and re-pack a log, as
a code's resends do; a 4th round inside a minute would be refused by 3/minute):

- **ours**: ``CapLimiter.hit``, one EVALSHA per decision; and ``CapLimiter.hit_many``
  in batches of ``dispatch_batch`` (the setting's default), as the dispatch task calls it;
  each also with the fail-over floor's lineage check (``INFO`` and a ``GET`` inside the
  script, the lineage old), as the runtime builds its limiter;
- **limits**: the ``limits`` library's moving window (``RedisStorage`` +
  ``MovingWindowRateLimiter``) as its users write it, one ``hit`` per cap, so three
  round trips per decision; it has no multi-cap call and no pipelined form;
- **bare EVALSHA**: a script that only returns 1, called through the same client with
  the same key and arguments in the same pattern (single as the raw ``EVALSHA`` command
  ``hit`` sends, and pipelined in batches of the same size exactly as ``hit_many`` sends
  them): the ceiling for one script per decision. Also single through redis-py's
  ``Script`` object, as runs before ``hit`` sent the raw command measured the ceiling
  (``Script`` adds a tuple and an ``import`` statement a call: ``vs_evalsha_script``).

Like is compared with like: the headline ``decisions_per_s`` is the single-call form,
set against limits (also one decision at a time) and against the single bare EVALSHA;
the pipelined form is set against the pipelined bare EVALSHA. The phases take turns in
chunks of 1,000 decisions (rotating order), so a noisy neighbour or a CPU-frequency
change hits them alike; figures are medians of the ``--rounds`` rounds. With two or
more CPUs the private redis-server runs on CPU 1 and this client on CPU 0, as Redis
and its clients run on separate cores in production (when the scheduler happens to put
both on one core, a round trip is twice as fast and the figures swing between runs).

Each phase's CPU is counted too (this process's ``process_time`` and Redis's
``used_cpu_user`` + ``used_cpu_sys``, µs a decision): on a machine busy with other work
the round trips mostly wait for a core, which blurs the rates, while the CPU each form
costs stays what it is; ``cpu_vs_evalsha`` is the headline ratio in CPU.

Memory: ``INFO memory`` ``used_memory`` before and after ``--memory-numbers`` numbers
each take ``--attempts`` attempts through the real script (1 s + margin apart, as the
1/second cap allows), divided by the count, on an emptied database (so the key tables'
growth is counted too: the buckets' keys and hashes, every byte the numbers cost);
plus ``MEMORY USAGE`` and encoding of one bucket (a hash holding one field a number,
scheduler/caps.py). Resends a minute apart would make a value 12 bytes rather than 10.
The quick run's 25,000 numbers put ~6 in each of the 4,096 buckets a provider, so each
bucket's own ~100 B weighs more than at the full run's 100,000 (~24 a bucket): the
quick figure is the larger, the honest one for a small deployment.

The last line printed is one JSON object (``decisions_per_s``, ``vs_limits``,
``vs_evalsha``, ``bytes_per_number`` and the raw figures).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import limits
import redis
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import Settings
from scheduler.caps import BUCKETS, CapCheck, CapLimiter, cap_slot
from scheduler.caps_floor import LINEAGE_KEY, CapFloor
from scheduler.limits import parse_caps

_DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]

CAPS = "1/second;3/minute;10/day"
BATCH = _DEFAULTS.dispatch_batch  # what the dispatch task hands hit_many
MARGIN = _DEFAULTS.cap_margin
CHUNK = 1000  # decisions per turn; a multiple of BATCH
TRIVIAL = "return 1"
TARGETS = {"vs_limits": 2.5, "vs_evalsha": 0.90, "bytes_per_number": 120.0}
PHASES = (
    "ours_single",
    "evalsha_single",
    "evalsha_single_script",
    "limits_moving",
    "ours_pipelined",
    "evalsha_pipelined",
    "ours_floored_pipelined",
    "ours_floored_single",
)


# -- a Redis of our own ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto one CPU (Linux; elsewhere a no-op)."""
    tasks = Path(f"/proc/{pid}/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.exists() else [pid]:
        with suppress(OSError, AttributeError):
            os.sched_setaffinity(tid, {cpu})


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


@contextmanager
def private_redis(*, pin: bool) -> Iterator[str]:
    """A throw-away redis-server: no RDB, no AOF, so nothing but our keys costs time."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (make redis), or pass --redis-url")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="nq-bench-") as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            client.close()
            if pin:
                cpus = sorted(os.sched_getaffinity(0))
                _pin(process.pid, cpus[1])
                _pin(os.getpid(), cpus[0])
            yield url
        finally:
            process.terminate()
            process.wait(10)


# -- the phases ----------------------------------------------------------------------------


class Bench:
    """The phases over their own numbers (so no phase sees another's state)."""

    def __init__(self, client: redis.Redis, url: str, *, private: bool, provider: str) -> None:

        self.client = client
        #: a Redis we started: flush freely; else delete only this run's keys
        self.private = private
        self.provider = provider
        self.limits_prefix = "LIMITS" if private else f"nqbench{provider}"
        self.caps = parse_caps(CAPS)
        self.limiter = CapLimiter(client, margin=MARGIN)
        #: as the runtime builds it: the fail-over floor's lineage check in every call
        #: (scheduler/caps_floor.py); the lineage is made old below, as it is but for a
        #: day after a fail-over, so this is the steady cost: one INFO and one GET a call
        self.floored = CapLimiter(
            client, margin=MARGIN, floor=CapFloor(frozenset({provider}), lambda _n, _s: {})
        )
        self.replid = client.info("replication")["master_replid"]
        self.args = self.limiter._args(self.caps)
        self.trivial = client.register_script(TRIVIAL)
        self.trivial.sha = client.script_load(TRIVIAL)
        self.items = [limits.parse(text) for text in CAPS.split(";")]
        storage = RedisStorage(url, key_prefix=self.limits_prefix)
        self.moving = MovingWindowRateLimiter(storage)
        self.run: dict[str, Callable[[list[str]], None]] = {
            "ours_single": self.ours_single,
            "evalsha_single": self.bare_single,
            "evalsha_single_script": self.bare_single_script,
            "limits_moving": self.limits_moving,
            "ours_pipelined": self.ours_pipelined,
            "evalsha_pipelined": self.bare_pipelined,
            "ours_floored_pipelined": self.ours_floored_pipelined,
            "ours_floored_single": self.ours_floored_single,
        }

    def ours_single(self, numbers: list[str]) -> None:
        hit, provider, caps = self.limiter.hit, self.provider, self.caps
        for number in numbers:
            hit(provider, number, caps)

    def ours_pipelined(self, numbers: list[str]) -> None:
        hit_many, provider, caps = self.limiter.hit_many, self.provider, self.caps
        for start in range(0, len(numbers), BATCH):
            hit_many([CapCheck(provider, n, caps) for n in numbers[start : start + BATCH]])

    def ours_floored_pipelined(self, numbers: list[str]) -> None:
        if self.private:  # never on someone else's Redis: it would end their doubt
            self.client.set(LINEAGE_KEY, f"{self.replid} 0")  # began long ago
        hit_many, provider, caps = self.floored.hit_many, self.provider, self.caps
        for start in range(0, len(numbers), BATCH):
            hit_many([CapCheck(provider, n, caps) for n in numbers[start : start + BATCH]])

    def ours_floored_single(self, numbers: list[str]) -> None:
        if self.private:
            self.client.set(LINEAGE_KEY, f"{self.replid} 0")
        hit, provider, caps = self.floored.hit, self.provider, self.caps
        for number in numbers:
            hit(provider, number, caps)

    def limits_moving(self, numbers: list[str]) -> None:
        hit, items = self.moving.hit, self.items
        for number in numbers:
            all(hit(item, number) for item in items)

    def bare_single(self, numbers: list[str]) -> None:
        # the very call hit makes: the raw EVALSHA command, one key (the bucket), the field
        execute, sha, args = self.client.execute_command, self.trivial.sha, self.args
        provider = self.provider
        for number in numbers:
            key, field = cap_slot(provider, number)
            execute("EVALSHA", sha, 1, key, field, *args)

    def bare_single_script(self, numbers: list[str]) -> None:
        script, args, provider = self.trivial, self.args, self.provider
        for number in numbers:
            key, field = cap_slot(provider, number)
            script(keys=[key], args=[field, *args])

    def bare_pipelined(self, numbers: list[str]) -> None:
        # the very calls hit_many makes: plain EVALSHA in a non-transactional pipeline
        sha, args, client, provider = self.trivial.sha, self.args, self.client, self.provider
        for start in range(0, len(numbers), BATCH):
            pipe = client.pipeline(transaction=False)
            for number in numbers[start : start + BATCH]:
                key, field = cap_slot(provider, number)
                pipe.evalsha(sha, 1, key, field, *args)
            pipe.execute(raise_on_error=False)

    def clean(self) -> None:
        if self.private:
            self.client.flushdb()
            return
        for pattern in (f"nq:cap:{self.provider}:*", f"{self.limits_prefix}:*"):
            batch: list[bytes] = []
            for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self.client.unlink(*batch)
                    batch.clear()
            if batch:
                self.client.unlink(*batch)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def evalsha_stats(self) -> tuple[int, float]:
        stat = self.client.info("commandstats").get("cmdstat_evalsha", {})
        return int(stat.get("calls", 0)), float(stat.get("usec", 0))

    def server_cpu(self) -> float:
        """Seconds of CPU the Redis process has used (user and system)."""
        cpu = self.client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    def round(
        self, numbers: dict[str, list[str]]
    ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """Every phase over all its numbers, taking turns chunk by chunk: (rates, µs of
        Redis per call, µs of CPU per decision, this client's and Redis's together)."""
        spent = dict.fromkeys(PHASES, 0.0)
        cpu = dict.fromkeys(PHASES, 0.0)
        calls = dict.fromkeys(PHASES, 0)
        usec = dict.fromkeys(PHASES, 0.0)
        count = len(numbers[PHASES[0]])
        for turn, start in enumerate(range(0, count, CHUNK)):
            shift = turn % len(PHASES)
            for name in PHASES[shift:] + PHASES[:shift]:
                chunk = numbers[name][start : start + CHUNK]
                calls0, usec0 = self.evalsha_stats()
                server0 = self.server_cpu()
                began, client0 = time.perf_counter(), time.process_time()
                self.run[name](chunk)
                spent[name] += time.perf_counter() - began
                cpu[name] += time.process_time() - client0 + self.server_cpu() - server0
                calls1, usec1 = self.evalsha_stats()
                calls[name] += calls1 - calls0
                usec[name] += usec1 - usec0
        rates = {name: count / spent[name] for name in PHASES}
        per_call = {name: usec[name] / max(1, calls[name]) for name in PHASES}
        cpu_us = {name: cpu[name] * 1e6 / count for name in PHASES}
        return rates, per_call, cpu_us

    def memory(self, numbers: list[str], attempts: int) -> dict[str, Any]:
        """Bytes per number with ``attempts`` real attempts each, through the script."""
        self.clean()
        before = self.used_memory()
        allowed = 0
        after_first = before
        for attempt in range(attempts):
            if attempt:
                time.sleep(1.0 + MARGIN + 0.1)  # the 1/second cap (plus margin) allows it
            for start in range(0, len(numbers), BATCH):
                checks = [
                    CapCheck(self.provider, n, self.caps) for n in numbers[start : start + BATCH]
                ]
                allowed += sum(d.allowed for d in self.limiter.hit_many(checks))
            if not attempt:
                after_first = self.used_memory()
        after = self.used_memory()
        key, field = cap_slot(self.provider, numbers[0])
        value = self.client.hget(key, field) or b""
        usage = int(self.client.memory_usage(key, samples=0) or 0)
        fields = int(self.client.hlen(key))
        encoding = self.client.object("encoding", key)
        buckets = sum(1 for _ in self.client.scan_iter(match=f"nq:cap:{self.provider}:*"))
        # limits, one decision on one number: its three lists, for comparison
        self.clean()
        self.limits_moving(numbers[:1])
        limits_usage = sum(
            int(self.client.memory_usage(key, samples=0) or 0)
            for key in self.client.scan_iter(match=f"{self.limits_prefix}:*")
        )
        self.clean()
        return {
            "bytes_per_number": (after - before) / len(numbers),
            "bytes_per_number_1_attempt": (after_first - before) / len(numbers),
            "memory_numbers": len(numbers),
            "attempts_per_number": attempts,
            "attempts_recorded": allowed,
            "memory_usage_one_bucket": usage,
            "fields_in_that_bucket": fields,
            "bucket_encoding": encoding.decode() if isinstance(encoding, bytes) else encoding,
            "buckets_used": buckets,
            "buckets": BUCKETS,
            "value_bytes": len(value),
            "field_bytes": len(field),
            "limits_memory_usage_one_number_1_attempt": limits_usage,
        }


# -- the report ------------------------------------------------------------------------


def report(figures: dict[str, Any]) -> None:

    console = Console(width=120)
    raw = figures["raw"]
    table = Table(
        title=f"per-number caps ({CAPS}): {figures['numbers']:,} numbers a phase, "
        f"median of {figures['rounds']} rounds; {figures['pinned']}"
    )
    for column in ("form", "decisions/s", "vs its bare EVALSHA", "Redis µs/EVALSHA"):
        table.add_column(column, justify="left" if column == "form" else "right")
    rows = [
        ("ours: CapLimiter.hit, 1 EVALSHA a decision", "ours_single", "evalsha_single"),
        ("limits: moving window, 3 hits a decision", "limits_moving", "evalsha_single"),
        ("bare EVALSHA (return 1), single", "evalsha_single", "evalsha_single"),
        (
            "bare EVALSHA (return 1), single, through redis-py's Script",
            "evalsha_single_script",
            "evalsha_single",
        ),
        (f"ours: hit_many, batches of {BATCH}", "ours_pipelined", "evalsha_pipelined"),
        (f"bare EVALSHA (return 1), batches of {BATCH}", "evalsha_pipelined", "evalsha_pipelined"),
        (
            f"ours with the fail-over floor's check, batches of {BATCH}",
            "ours_floored_pipelined",
            "evalsha_pipelined",
        ),
        (
            "ours with the fail-over floor's check, single (as the runtime calls hit)",
            "ours_floored_single",
            "evalsha_single",
        ),
    ]
    for label, name, ceiling in rows:
        rate = raw["per_s"][name]
        table.add_row(
            label,
            f"{rate:,.0f}",
            f"{rate / raw['per_s'][ceiling]:.0%}",
            f"{raw['server_usec_per_call'][name]:.1f}",
        )
    console.print(table)
    memory = figures["memory"]
    console.print(
        f"memory: {memory['memory_numbers']:,} numbers × {memory['attempts_per_number']} "
        f"attempts ({memory['attempts_recorded']:,} recorded): "
        f"{figures['bytes_per_number']:.1f} bytes a number (used_memory delta / count; "
        f"{memory['bytes_per_number_1_attempt']:.1f} after the first attempt); "
        f"{memory['buckets_used']:,} of {memory['buckets']:,} buckets; one bucket: MEMORY "
        f"USAGE {memory['memory_usage_one_bucket']} B for {memory['fields_in_that_bucket']} "
        f"numbers ({memory['bucket_encoding']}; field {memory['field_bytes']} digits, "
        f"value {memory['value_bytes']} B); limits' three lists "
        f"for one number: MEMORY USAGE {memory['limits_memory_usage_one_number_1_attempt']} B"
    )
    console.print(
        f"headline, single call, like for like: {figures['decisions_per_s']:,.0f} decisions/s "
        f"= {figures['vs_limits']:.2f}× limits' moving window = {figures['vs_evalsha']:.0%} "
        f"of a bare EVALSHA ({figures['vs_evalsha_script']:.0%} of one through redis-py's "
        f"Script); pipelined (as dispatch calls it): "
        f"{figures['decisions_per_s_pipelined']:,.0f}/s = "
        f"{figures['vs_evalsha_pipelined']:.0%} of a bare pipelined EVALSHA"
    )
    console.print(
        f"the fail-over floor's lineage check (INFO + GET in each call, lineage old): "
        f"hit_many at {figures['floored_vs_ours_pipelined']:.0%} of hit_many without it; "
        f"hit at {figures['floored_vs_evalsha']:.0%} of a bare EVALSHA"
    )
    console.print(
        f"in CPU (client + Redis, µs a decision), which waiting for a core does not blur: "
        f"hit {figures['cpu_vs_evalsha']:.0%} of a bare EVALSHA, with the floor's check "
        f"{figures['cpu_floored_vs_evalsha']:.0%}; hit_many "
        f"{figures['cpu_vs_evalsha_pipelined']:.0%} of the bare pipelined EVALSHA"
    )
    if not figures["private_redis"]:
        console.print(
            "memory on a shared Redis: others' writes and its already-grown key tables "
            "blur the figure; run without --redis-url for the real one"
        )
    for name, met in figures["targets_met"].items():
        console.print(f"target {name} {TARGETS[name]}: {'met' if met else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer numbers, same method (<30 s)")
    parser.add_argument("--redis-url", help="an existing Redis (only this run's keys are touched)")
    parser.add_argument("--numbers", type=int, help="distinct numbers a phase and round")
    parser.add_argument("--memory-numbers", type=int, help="numbers for the memory figure")
    parser.add_argument("--attempts", type=int, default=3, help="attempts a number (memory)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (figures are medians)")
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement to the OS")
    options = parser.parse_args(argv)
    count = options.numbers or (5_000 if options.quick else 100_000)
    memory_count = options.memory_numbers or (25_000 if options.quick else 100_000)
    if not 1 <= options.attempts <= 3:
        parser.error("--attempts: 1 to 3 (a 4th would wait a minute for the 3/minute cap)")
    private = options.redis_url is None
    pin = private and not options.no_pin and can_pin()

    started = time.perf_counter()
    with private_redis(pin=pin) if private else _given(options.redis_url) as url:
        client = redis.Redis.from_url(url)
        provider = "ihuyi" if private else "b" + secrets.token_hex(2)  # same key length
        bench = Bench(client, url, private=private, provider=provider)

        def numbers(block: int, size: int) -> list[str]:
            return [f"+86138{block * size + i:08d}" for i in range(size)]

        # warm up: connections, script cache, the interpreter's own caches
        bench.round({name: numbers(i, CHUNK) for i, name in enumerate(PHASES)})
        bench.clean()
        rates: dict[str, list[float]] = {name: [] for name in PHASES}
        usec: dict[str, list[float]] = {name: [] for name in PHASES}
        cpu: dict[str, list[float]] = {name: [] for name in PHASES}
        for _ in range(options.rounds):
            began = time.monotonic()
            round_rates, round_usec, round_cpu = bench.round(
                {name: numbers(i, count) for i, name in enumerate(PHASES)}
            )
            # a number's next attempt must come after the 1/second cap (and margin) frees
            time.sleep(max(0.0, began + 1.0 + MARGIN + 0.1 - time.monotonic()))
            for name in PHASES:
                rates[name].append(round_rates[name])
                usec[name].append(round_usec[name])
                cpu[name].append(round_cpu[name])
        memory = bench.memory(numbers(0, memory_count), options.attempts)
        server = client.info("server")
        client.close()

    per_s = {name: statistics.median(values) for name, values in rates.items()}
    cpu_us = {name: statistics.median(values) for name, values in cpu.items()}
    figures: dict[str, Any] = {
        "decisions_per_s": per_s["ours_single"],
        "form": "single call: CapLimiter.hit, one EVALSHA round trip a decision",
        "vs_limits": per_s["ours_single"] / per_s["limits_moving"],
        "vs_evalsha": per_s["ours_single"] / per_s["evalsha_single"],
        "vs_evalsha_script": per_s["ours_single"] / per_s["evalsha_single_script"],
        "bytes_per_number": memory["bytes_per_number"],
        "decisions_per_s_pipelined": per_s["ours_pipelined"],
        "vs_evalsha_pipelined": per_s["ours_pipelined"] / per_s["evalsha_pipelined"],
        "floored_vs_ours_pipelined": per_s["ours_floored_pipelined"] / per_s["ours_pipelined"],
        "floored_vs_evalsha": per_s["ours_floored_single"] / per_s["evalsha_single"],
        # the same ratios in CPU (this client's and Redis's), which a busy machine's
        # waiting for a core does not blur
        "cpu_vs_evalsha": cpu_us["evalsha_single"] / cpu_us["ours_single"],
        "cpu_floored_vs_evalsha": cpu_us["evalsha_single"] / cpu_us["ours_floored_single"],
        "cpu_vs_evalsha_pipelined": cpu_us["evalsha_pipelined"] / cpu_us["ours_pipelined"],
        "limits_decisions_per_s": per_s["limits_moving"],
        "evalsha_per_s": per_s["evalsha_single"],
        "evalsha_script_per_s": per_s["evalsha_single_script"],
        "evalsha_pipelined_per_s": per_s["evalsha_pipelined"],
        "batch": BATCH,
        "caps": CAPS,
        "margin_s": MARGIN,
        "numbers": count,
        "rounds": options.rounds,
        "quick": options.quick,
        "private_redis": private,
        "pinned": "redis-server on CPU 1, client on CPU 0" if pin else "not pinned",
        "redis_version": server.get("redis_version"),
        "memory": memory,
        "raw": {
            "per_s": per_s,
            "per_s_rounds": rates,
            "server_usec_per_call": {k: statistics.median(v) for k, v in usec.items()},
            "cpu_us_per_decision": cpu_us,
        },
    }
    figures["targets_met"] = {
        "vs_limits": figures["vs_limits"] >= TARGETS["vs_limits"],
        "vs_evalsha": figures["vs_evalsha"] >= TARGETS["vs_evalsha"],
        "bytes_per_number": figures["bytes_per_number"] <= TARGETS["bytes_per_number"],
    }
    figures["seconds"] = time.perf_counter() - started
    report(figures)
    print(json.dumps(_rounded(figures), separators=(",", ":")))
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


if __name__ == "__main__":
    raise SystemExit(main())
