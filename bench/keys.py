"""What named keys cost the hot path, ``POST /v1/notifications``, and what each per-key
limit costs Redis — each against its baseline in the same run.

(a) The HTTP API (one ``notifyq api`` process, private Redis, SQLite or ``--database-url``,
    no workers: bench/api.py's single posts, ``--concurrency`` in flight) posting with:
    a NOTIFYQ_API_KEYS key (the baseline: how every request was recognised before named
    keys), a key made with ``notifyq keys create``, one with a request rate (set high
    enough never to refuse, so every request pays the check), and one with a daily
    quota (the same). This machine's speed drifts from one minute to the next, so the
    four take turns: ``--rounds`` rounds of one short phase each, in the same order,
    and each key's figure is over all its phases.
(b) Redis's own CPU per call (``INFO commandstats``, microseconds inside Redis, so the
    client's share of the machine does not count) of the two scripts a per-key request
    rate could run on, with the window already holding ``N`` requests: the per-number
    caps log (caps.lua, read whole every call) and the GCRA (rate.lua, one time per
    key); and of the daily quota's count (quota.lua) beside them.

Prints a table, then as its last line one JSON object of its figures.

    python bench/keys.py            # 6,000 posts a phase
    python bench/keys.py --quick    # 1,500 a phase
    python bench/keys.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from api.keyring import announce  # noqa: E402
from bench.api import KEY, Phase, drive, notification  # noqa: E402
from bench.store import add_database_url, fresh_database  # noqa: E402
from bench.store import kind as store_kind  # noqa: E402
from harness.signals import install_sigterm_as_interrupt  # noqa: E402
from harness.supervise import RedisServer, Stack, free_port  # noqa: E402
from scheduler.caps import CapLimiter  # noqa: E402
from scheduler.limits import parse_caps  # noqa: E402
from scheduler.quota import DailyQuota  # noqa: E402
from scheduler.rates import RateLimiter  # noqa: E402
from store import Database  # noqa: E402
from store.keys import KeyStore, Scope  # noqa: E402

#: requests already inside the window when each script's cost is measured
FILLS = (100, 1_000, 5_000)


def api_phases(args: argparse.Namespace, directory: Path, redis_url: str) -> list[Phase]:
    """(a): the baseline and the three made keys, each over all its rounds."""
    posts = (1_500 if args.quick else 6_000) // args.rounds
    with fresh_database(args.database_url, directory, "keys") as database_url:
        store = KeyStore(Database(database_url))
        made = {
            "made key": store.create("plain", {Scope.SEND})[1],
            "made key, rate": store.create("rated", {Scope.SEND}, rate="1000000/second")[1],
            "made key, daily quota": store.create("metered", {Scope.SEND}, daily_quota=10**9)[1],
        }
        announce(redis.Redis.from_url(redis_url))
        env = {
            "NOTIFYQ_REDIS_URL": redis_url,
            "NOTIFYQ_DATABASE_URL": database_url,
            "NOTIFYQ_API_KEYS": KEY,
            "PYTHONPATH": str(ROOT),
        }
        stack = Stack(directory, env)
        port = free_port()
        try:
            stack.api(port)
            url = f"http://127.0.0.1:{port}"
            first = 0

            def run(name: str, key: str, count: int) -> Phase:
                nonlocal first
                start = first
                first += count
                return asyncio.run(
                    drive(
                        url,
                        count,
                        args.concurrency,
                        lambda i: ("/v1/notifications", notification(start + i), 1),
                        name,
                        key=key,
                    )
                )

            keys = {"NOTIFYQ_API_KEYS key": KEY, **made}
            for key in keys.values():
                run("warm-up", key, 200)
            rounds = [
                [run(name, key, posts) for name, key in keys.items()] for _ in range(args.rounds)
            ]
        finally:
            stack.stop()
    return [merged(list(phases)) for phases in zip(*rounds, strict=True)]


def merged(phases: list[Phase]) -> Phase:
    """One key's phases of every round as one."""
    return Phase(
        phases[0].name,
        sum(p.requests for p in phases),
        sum(p.items for p in phases),
        sum(p.seconds for p in phases),
        [latency for p in phases for latency in p.latencies],
    )


def script_costs(redis_url: str) -> dict[str, float]:
    """(b): µs of Redis CPU per call, by script and by how full the window is."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    caps = CapLimiter(client, margin=0.5)
    rates = RateLimiter(client)
    quota = DailyQuota(client, ZoneInfo("Asia/Shanghai"))
    costs: dict[str, float] = {}

    def measured(script: str, calls: int, call: object) -> float:
        client.config_resetstat()
        for _ in range(calls):
            call()  # type: ignore[operator]
        stats = client.info("commandstats")["cmdstat_evalsha"]
        return float(stats["usec"]) / stats["calls"]

    for fill in FILLS:
        limit = parse_caps(f"{fill * 10}/hour")  # room for the fill and the calls measured
        for _ in range(fill):
            caps.hit("api-key", f"log{fill}", limit)
            rates.take(f"gcra{fill}", limit)
        costs[f"caps_lua_{fill}"] = measured(
            "caps", 500, lambda f=fill, lim=limit: caps.hit("api-key", f"log{f}", lim)
        )
        costs[f"rate_lua_{fill}"] = measured(
            "rate", 500, lambda f=fill, lim=limit: rates.take(f"gcra{f}", lim)
        )
    costs["quota_lua"] = measured("quota", 500, lambda: quota.take("api-key", "q", 10**9))
    return costs


def label(phase: Phase) -> str:
    return phase.name.replace(",", "").replace(" ", "_")


def main() -> None:
    install_sigterm_as_interrupt()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,500 posts a phase")
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5, help="turns each key takes")
    add_database_url(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nq-bench-keys-") as tmp:
        directory = Path(tmp)
        server = RedisServer(directory / "redis", appendfsync=None)
        server.start()
        try:
            phases = api_phases(args, directory, server.url)
            costs = script_costs(server.url)
        finally:
            server.stop()

    baseline = phases[0].rps
    print(
        f"(a) POST /v1/notifications, one uvicorn process, {store_kind(args.database_url)}, "
        f"{args.concurrency} in flight, {phases[0].requests} posts a key in {args.rounds} turns"
    )
    print(f"{'key':32} {'req/s':>8} {'vs baseline':>12} {'p50 ms':>8} {'p99 ms':>8}")
    for phase in phases:
        print(
            f"{phase.name:32} {phase.rps:8.0f} {phase.rps / baseline:11.0%} "
            f"{phase.quantile(0.50):8.1f} {phase.quantile(0.99):8.1f}"
        )
    print("\n(b) Redis CPU per call (µs, INFO commandstats), the window already holding N requests")
    print(f"{'N':>6} {'caps.lua (log)':>15} {'rate.lua (GCRA)':>16}")
    for fill in FILLS:
        print(f"{fill:6d} {costs[f'caps_lua_{fill}']:15.1f} {costs[f'rate_lua_{fill}']:16.1f}")
    print(f"daily quota (quota.lua), any quota: {costs['quota_lua']:.1f}")
    figures = {
        "baseline_rps": round(baseline, 1),
        "baseline_p99_ms": round(phases[0].quantile(0.99), 1),
        **{
            f"{label(phase)}_{figure}": value
            for phase in phases[1:]
            for figure, value in (
                ("rps", round(phase.rps, 1)),
                ("vs_baseline", round(phase.rps / baseline, 3)),
                ("p99_ms", round(phase.quantile(0.99), 1)),
            )
        },
        **{f"{name}_us": round(value, 1) for name, value in costs.items()},
        "posts_per_key": phases[0].requests,
        "rounds": args.rounds,
        "store": store_kind(args.database_url).lower(),
        "quick": args.quick,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
