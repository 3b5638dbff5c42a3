"""Campaign intake at scale: a 1,000,000-row CSV, stored and scheduled.

One run, one machine, SQLite (the default store; PostgreSQL with ``--database-url``, a
fresh database each run), a private Redis:

(a) notifyq   ``notifyq campaign create`` on the whole file — read and validated row by
              row, stored in bulk, the campaign scheduled — timed from the command's
              start to its exit, with the peak RSS of that process (``wait4``);
(b) naive     one Celery ``.delay()`` per row with the row in the task's arguments (as
              a first version would write it), on the first 50,000 rows, extrapolated
              to the whole file.

Both in the same run, the baseline first (a store busy after a million rows would slow
it). The baseline's per-row cost is measured on its sample and multiplied out, since a
million ``.delay()`` calls take a quarter of an hour; (a) is the whole command, its
process start and imports included. On a busy machine both slow down: compare their
ratio, not the seconds.

Prints a table, then as its last line one JSON object:
``{"seconds_1m", "peak_rss_mb", "naive_seconds_1m", ...}``.

    python bench/campaign.py            # 1,000,000 rows
    python bench/campaign.py --quick    # 100,000 rows, figures extrapolated to 1,000,000
    python bench/campaign.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import redis
from sqlalchemy import create_engine, text

from config.settings import Settings
from worker.app import make_celery

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import bench_parser, private_redis  # noqa: E402
from bench.store import add_database_url, fresh_database, kind  # noqa: E402
from harness.supervise import NOTIFYQ  # noqa: E402

NAIVE_ROWS = 50_000


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)
    prefixes = ["135", "136", "137", "138", "139", "150", "151", "158", "186", "188"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mobile", "name", "amount"])
        for i in range(rows):
            writer.writerow(
                [f"{prefixes[i % 10]}{i:08d}", f"客户{i}", f"{rng.randint(100, 99999)}.00"]
            )


def notifyq_import(csv_path: Path, env: dict[str, str], cwd: Path) -> tuple[float, float, dict]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            NOTIFYQ,
            "campaign",
            "create",
            "--provider",
            "jumdata",
            "--recipients",
            str(csv_path),
            "--template",
            "1001",
            "--option",
            "playTimes=2",
            "--json",
        ],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out = process.stdout.read().decode() if process.stdout else ""
    err = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"campaign create failed: {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, json.loads(out)


def naive_publish(csv_path: Path, redis_url: str, rows: int) -> float:
    """One .delay() per row, the row's data in the task: what this design replaces."""

    app = make_celery(Settings(_env_file=None, redis_url=redis_url))
    send = app.signature("naive.send_reminder")  # never consumed: only publishing is timed
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        started = time.perf_counter()
        for count, row in enumerate(reader, start=1):
            send.delay(row["mobile"], "1001", [row["name"], row["amount"]])
            if count >= rows:
                break
    return time.perf_counter() - started


def count_rows(database_url: str, campaign_id: int) -> tuple[int, str]:

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT count(*) FROM notifications WHERE campaign_id = :c"),
                {"c": campaign_id},
            ).scalar_one()
            status = conn.execute(
                text("SELECT status FROM campaigns WHERE id = :c"), {"c": campaign_id}
            ).scalar_one()
    finally:
        engine.dispose()
    return stored, status


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, extrapolated")
    parser.add_argument("--rows", type=int, default=None)
    add_database_url(parser)
    args = parser.parse_args()
    store = kind(args.database_url)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    with private_redis("nq-campaign-") as (directory, server):
        csv_path = directory / "borrowers.csv"
        write_csv(csv_path, rows)
        with fresh_database(args.database_url, directory, "notifyq") as database_url:
            env = {
                "NOTIFYQ_REDIS_URL": server.url,
                "NOTIFYQ_DATABASE_URL": database_url,
                "NOTIFYQ_JUMDATA_APP_ID": "bench",
                "NOTIFYQ_JUMDATA_APP_SECRET": "bench-secret",
                "NOTIFYQ_LOG_LEVEL": "WARNING",
            }
            # the baseline first: after a million rows the database server is still
            # busy (checkpoint, autovacuum) and would slow a baseline run after it
            naive_rows = min(NAIVE_ROWS, rows)
            naive_seconds = naive_publish(csv_path, server.url, naive_rows)
            redis.Redis.from_url(server.url).flushdb()
            seconds, peak_mb, answer = notifyq_import(csv_path, env, directory)
            stored, status = count_rows(database_url, answer["id"])
    assert stored == rows == answer["accepted"], (stored, rows, answer)
    scale = 1_000_000 / rows
    seconds_1m = seconds * scale
    naive_1m = naive_seconds * (1_000_000 / naive_rows)
    print(
        f"\nbench/campaign.py: a {rows:,}-row CSV (mobile, name, amount), jumdata, {store}, "
        "one Redis\n"
    )
    print(f"{'run':58} {'seconds':>9} {'rows/s':>10} {'peak RSS':>9}")
    print(
        f"{'(a) notifyq campaign create: stored and ' + status:58} {seconds:9.1f} {rows / seconds:10,.0f} {peak_mb:7.0f}MB"
    )
    print(
        f"{f'(b) naive: one .delay() per row, first {naive_rows:,} rows':58} {naive_seconds:9.1f} {naive_rows / naive_seconds:10,.0f}"
    )
    if scale != 1:
        print(f"\n1,000,000 rows extrapolated: notifyq {seconds_1m:.1f} s, naive {naive_1m:.1f} s")
    else:
        print(
            f"\nnaive, extrapolated to 1,000,000 rows: {naive_1m:.1f} s ({naive_1m / seconds_1m:.1f}× notifyq)"
        )
    figures = {
        "seconds_1m": round(seconds_1m, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "naive_seconds_1m": round(naive_1m, 2),
        "rows": rows,
        "rows_per_s": round(rows / seconds),
        "naive_rows_per_s": round(naive_rows / naive_seconds),
        "extrapolated": scale != 1,
        "campaign_status": status,
        "store": store.lower(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
