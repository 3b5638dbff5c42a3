"""``notifyq caps show NUMBER``: what the per-number caps hold for one number, read from
Redis and decoded (the number's field of its provider's bucket is a packed binary
string: scheduler/caps_codec.lua; while keys of the old layout may count, those too)."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from cli.common import BAD_INPUT, exits, fail, print_json, settings
from cli.options import AsJson, Number, OneProvider

app = typer.Typer(help="Per-number caps: what each holds for a number.", no_args_is_help=True)


def _moment(at: float | None, zone: object) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).astimezone(zone).isoformat(timespec="milliseconds")  # type: ignore[arg-type]


@app.command()
def show(
    number: Number,
    provider: OneProvider = None,
    as_json: AsJson = False,
) -> None:
    """Calls in each cap's window, the provider's block, and the next free moment, per
    provider with caps, for NUMBER (any common spelling). Reads only; changes nothing."""
    from rich.console import Console
    from rich.table import Table

    from providers import registry
    from providers.numbers import e164, mask, parse_number
    from scheduler.caps import CapLimiter
    from scheduler.clock import Clock
    from scheduler.connect import redis_client

    config = settings()
    parsed = parse_number(number)
    if parsed is None:
        fail("NUMBER: not a phone number", BAD_INPUT)
    to = e164(parsed)
    names = [provider] if provider else [n for n in registry.names() if config.policy(n).caps]
    if provider and provider not in registry.names():
        fail(f"provider: unknown provider (one of: {', '.join(registry.names())})", BAD_INPUT)
    report = []
    with exits():
        client = redis_client(config.caps_redis_url or config.redis_url)
        limiter = CapLimiter(
            client, margin=config.cap_margin, clock=Clock(client, control=config.clock_control)
        )
        for name in names:
            state = limiter.state(name, to, config.policy(name).caps)
            report.append(
                {
                    "provider": name,
                    "caps": [
                        {
                            "cap": w.cap.text,
                            "used": w.used,
                            "free": max(0, w.cap.amount - w.used),
                            "frees_at": _moment(w.frees_at, config.zone),
                        }
                        for w in state.windows
                    ],
                    "blocked_until": _moment(state.blocked_until, config.zone),
                    "attempts": [_moment(a, config.zone) for a in state.attempts],
                    "next_free": _moment(state.next_free, config.zone),
                    "free_now": state.next_free <= state.now,
                }
            )
    if as_json:
        print_json({"to": mask(to), "providers": report})
        return
    table = Table(title=f"caps for {mask(to)}")
    for column in ("provider", "cap", "calls in window", "frees at", "next free"):
        table.add_column(column)
    for entry in report:
        first = True
        blocked = entry["blocked_until"]
        nxt = "now" if entry["free_now"] else entry["next_free"]
        for cap in entry["caps"] or [{"cap": "-", "used": 0, "frees_at": None}]:
            table.add_row(
                entry["provider"] if first else "",
                cap["cap"],
                str(cap["used"]),
                cap["frees_at"] or "",
                (nxt + (f" (provider block until {blocked})" if blocked else "")) if first else "",
            )
            first = False
    Console().print(table)
