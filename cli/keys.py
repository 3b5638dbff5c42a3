"""``notifyq keys create | list | revoke``: the API keys services call with.

A change is committed to the store first, then announced in Redis, and every API
process takes it up within a second, without a restart (api/keyring.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.common import BAD_INPUT, FAILURE, exits, fail, print_json, settings
from cli.options import AsJson

if TYPE_CHECKING:
    from config.settings import Settings
    from store.keys import KeyStore

app = typer.Typer(
    help="API keys: each service its own, seeing only what it made.", no_args_is_help=True
)


def _store(config: Settings) -> KeyStore:
    from store import Database
    from store.keys import KeyStore
    from store.migrate import ensure_schema

    ensure_schema(config.database_url)
    return KeyStore(Database(config.database_url))


def _announce(config: Settings, done: str) -> str | None:
    """Tell the API processes; if Redis cannot be told, what that means."""
    from redis.exceptions import RedisError

    from api.keyring import FULL_RELOAD, announce
    from scheduler.connect import redis_client

    try:
        announce(redis_client(config.redis_client_url, socket_connect_timeout=5))
    except RedisError as exc:
        return (
            f"{done}, but Redis could not be told ({type(exc).__name__}): API processes "
            f"that can read Redis take it up within {FULL_RELOAD:.0f} s, "
            "those that cannot within a second"
        )
    return None


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="the service's name: a-z 0-9 _ . -")],
    scope: Annotated[
        str, typer.Option(help="comma-separated: send (create and read), read, admin")
    ] = "send,read",
    rate: Annotated[
        str | None, typer.Option(help="requests in any window, e.g. 100/second")
    ] = None,
    quota: Annotated[
        int | None, typer.Option(help="notifications a day (midnight to midnight)")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Make a key for NAME and print it, this once: only its digest is kept."""
    from store.keys import BadKeyRequest, parse_scopes

    config = settings()
    with exits():
        try:
            record, key = _store(config).create(
                name, parse_scopes(scope), rate=rate, daily_quota=quota
            )
        except BadKeyRequest as exc:
            fail(str(exc), BAD_INPUT)
    if as_json:
        print_json({**record.public(), "key": key})
    else:
        typer.echo(key)
        typer.echo(
            f"key {name} ({', '.join(sorted(record.scopes))}) made: it is shown this once",
            err=True,
        )
    unannounced = _announce(config, f"key {name} made")
    if unannounced:  # the key is made and shown: a warning, not a failure
        typer.echo(f"warning: {unannounced}", err=True)


@app.command("list")
def list_(
    revoked: Annotated[bool, typer.Option("--all", help="revoked keys too")] = False,
    as_json: AsJson = False,
) -> None:
    """Keys by name: scopes, limits, when made and last used (never the key)."""
    config = settings()
    with exits():
        records = _store(config).listed(revoked=revoked)
    if as_json:
        print_json({"keys": [r.public() for r in records]})
        return
    table = Table("name", "scopes", "rate", "daily quota", "created", "last used", box=None)
    if revoked:
        table.add_column("revoked")
    for r in records:
        cells = [
            r.name,
            ",".join(sorted(r.scopes)),
            r.rate or "—",
            str(r.daily_quota) if r.daily_quota else "—",
            _when(r.created_at, config),
            _when(r.last_used_at, config),
        ]
        table.add_row(*cells, *([_when(r.revoked_at, config)] if revoked else []))
    Console().print(table)


@app.command()
def revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke NAME's key: every API process refuses it within a second, no restart."""
    config = settings()
    with exits():
        if not _store(config).revoke(name):
            fail(f"name: no live key named {name!r}", BAD_INPUT)
    unannounced = _announce(config, f"key {name} revoked")
    if unannounced:
        fail(unannounced, FAILURE)
    typer.echo(f"key {name} revoked")


def _when(moment: float | None, config: Settings) -> str:
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, config.zone).strftime("%Y-%m-%d %H:%M")
