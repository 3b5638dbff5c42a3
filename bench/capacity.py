"""The capacity model of docs/capacity.md, computed from measured figures, not guessed.

Inputs:

- the last JSON line of ``bench/dispatch.py`` runs (``--dispatch FILE``, SQLite and/or
  PostgreSQL): sends per second per worker process, Redis commands, SQL statements,
  commits and bytes of store per sent notification;
- measured here, on a private Redis: the bytes one number's caps log costs (ihuyi's
  three caps), the bytes one deferred entry costs, and how many cap decisions a second
  one Redis takes pipelined 50 at a time (as dispatch calls it) from this one client.

Output: for 1 M and 10 M notifications an hour, what each part needs — worker processes,
Redis commands/s and memory (caps and deferred set), store writes/s, commits/s and bytes
a day — and which limit is reached first. Prints a table, then one JSON object.

    python bench/capacity.py --dispatch var/dispatch-sqlite.log --dispatch var/dispatch-pg.log
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from harness.signals import install_sigterm_as_interrupt  # noqa: E402
from harness.supervise import RedisServer  # noqa: E402
from scheduler.caps import CapCheck, CapLimiter  # noqa: E402
from scheduler.deferred import DeferredSet  # noqa: E402
from scheduler.limits import parse_caps  # noqa: E402

IHUYI = parse_caps("1/second;3/minute;10/day")
RATES = {"1M/h": 1_000_000 / 3600, "10M/h": 10_000_000 / 3600}


def last_json(path: Path) -> dict[str, Any]:
    for line in reversed(path.read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"{path}: no JSON line")


def measure_redis(numbers: int, deferred: int) -> dict[str, float]:
    """Bytes a number's caps cost, bytes a deferred entry costs, decisions/s pipelined."""
    with tempfile.TemporaryDirectory(prefix="nq-capacity-") as tmp:
        server = RedisServer(Path(tmp) / "redis", appendfsync=None)
        server.start()
        try:
            client = redis.Redis.from_url(server.url)
            caps = CapLimiter(client)
            base = client.info("memory")["used_memory"]
            checks = [CapCheck("ihuyi", f"+86139{i:08d}", IHUYI) for i in range(numbers)]
            started = time.perf_counter()
            for start in range(0, numbers, 50):
                caps.hit_many(checks[start : start + 50])
            decisions_per_s = numbers / (time.perf_counter() - started)
            cap_bytes = (client.info("memory")["used_memory"] - base) / numbers
            base = client.info("memory")["used_memory"]
            pending = DeferredSet(client)
            now = time.time()
            for start in range(0, deferred, 5000):
                pending.add((10_000_000 + i, now + i) for i in range(start, start + 5000))
            deferred_bytes = (client.info("memory")["used_memory"] - base) / deferred
            simple_ops = redis_benchmark(server.port)
        finally:
            server.stop()
    return {
        "cap_bytes_per_number": cap_bytes,
        "deferred_bytes_per_entry": deferred_bytes,
        "cap_decisions_per_s_pipelined": decisions_per_s,
        "simple_commands_per_s": simple_ops,
    }


def redis_benchmark(port: int) -> float:
    """What one Redis takes of GET/SET a second from a C client, pipelined 16 deep
    (``redis-benchmark``): the server's own ceiling on this machine, not a client's."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-q", "-t", "set,get", "-P", "16", "-n", "400000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    rates = [float(m) for m in re.findall(r"([\d.]+) requests per second", out)]
    return sum(rates) / len(rates) if rates else float("nan")


def model(run: dict[str, Any], redis_figures: dict[str, float], mode: str) -> dict[str, Any]:
    """What ``mode``'s measured per-notification costs mean at each rate."""
    prefix = {"batched": "batched", "single": "single_1"}[mode]
    per_process = run[f"{prefix}_sends_per_s"] / run["workers"]
    redis_per = run[f"{prefix}_redis_per_sent"]
    sql_per = run[f"{prefix}_sql_per_sent"] + run[f"{prefix}_producer_sql_per_sent"]
    bytes_per = run[f"{prefix}_store_bytes_per_sent"]
    wal_per = run.get(f"{prefix}_wal_bytes_per_sent")
    out: dict[str, Any] = {
        "store": run["store"],
        "mode": mode,
        "measured_sends_per_s_per_process": round(per_process, 1),
        "redis_commands_per_sent": redis_per,
        "sql_statements_per_sent": round(sql_per, 2),
        "store_bytes_per_sent": bytes_per,
        "wal_bytes_per_sent": wal_per,
        "rates": {},
    }
    for name, rate in RATES.items():
        day = rate * 86400
        out["rates"][name] = {
            "per_s": round(rate),
            "worker_processes": int(-(-rate // per_process)),
            "redis_commands_per_s": round(rate * redis_per),
            "store_statements_per_s": round(rate * sql_per),
            "store_gb_per_day": round(day * bytes_per / 1e9, 1),
            "wal_gb_per_day": None if wal_per is None else round(day * wal_per / 1e9, 1),
            # every number called today keeps its log for the longest window (10/day)
            "caps_gb_distinct_numbers": round(day * redis_figures["cap_bytes_per_number"] / 1e9, 1),
            # a night's closed window (12 h) of everything, waiting in the deferred set
            "deferred_gb_12h_backlog": round(
                rate * 12 * 3600 * redis_figures["deferred_bytes_per_entry"] / 1e9, 1
            ),
        }
    return out


def main() -> None:
    install_sigterm_as_interrupt()  # SIGTERM stops what this run started, as Ctrl-C does
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dispatch", type=Path, action="append", required=True)
    parser.add_argument("--numbers", type=int, default=20_000)
    parser.add_argument("--deferred", type=int, default=200_000)
    args = parser.parse_args()
    runs = [last_json(path) for path in args.dispatch]
    figures = measure_redis(args.numbers, args.deferred)
    print(
        f"measured on a private Redis: {figures['cap_bytes_per_number']:.0f} bytes a number's "
        f"caps (ihuyi, 3 caps), {figures['deferred_bytes_per_entry']:.0f} bytes a deferred "
        f"entry, {figures['cap_decisions_per_s_pipelined']:,.0f} cap decisions/s pipelined "
        f"(50 a round trip, one client); GET/SET {figures['simple_commands_per_s']:,.0f}/s "
        "(redis-benchmark, pipelined 16)\n"
    )
    models = []
    for run in runs:
        for mode in ("batched", "single"):
            if f"{'batched' if mode == 'batched' else 'single_1'}_sends_per_s" not in run:
                continue
            m = model(run, figures, mode)
            models.append(m)
            print(
                f"{m['store']}, {mode}: {m['measured_sends_per_s_per_process']}/s a worker "
                f"process, {m['redis_commands_per_sent']} Redis commands, "
                f"{m['sql_statements_per_sent']} SQL statements, {m['store_bytes_per_sent']} "
                "bytes of store a sent notification"
            )
            for name, r in m["rates"].items():
                print(
                    f"  {name:6} {r['per_s']:5}/s: {r['worker_processes']:4} worker processes, "
                    f"Redis {r['redis_commands_per_s']:>8,} cmd/s, store "
                    f"{r['store_statements_per_s']:>7,} stmt/s, {r['store_gb_per_day']} GB/day"
                    + (f" (+{r['wal_gb_per_day']} GB WAL)" if r["wal_gb_per_day"] else "")
                    + f"; caps {r['caps_gb_distinct_numbers']} GB if every number is distinct, "
                    f"deferred {r['deferred_gb_12h_backlog']} GB for a 12 h backlog"
                )
    print(json.dumps({"redis": {k: round(v, 1) for k, v in figures.items()}, "models": models}))


if __name__ == "__main__":
    main()
