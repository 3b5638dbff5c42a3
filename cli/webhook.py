"""``notifyq webhook list | deliveries | retry``: the operator's view of every key's
webhook endpoints, what was sent to each and what came back, and a replay.

The command line is the operator's: it sees every key's endpoints (as an admin key does).
Endpoints are made through the API, by the key whose events they receive.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.common import BAD_INPUT, exits, fail, print_json, settings
from cli.options import AsJson

if TYPE_CHECKING:
    from config.settings import Settings
    from store.db import Database

app = typer.Typer(
    help="Webhook endpoints: their delivery log, and sending an event again.",
    no_args_is_help=True,
)


def _database(config: Settings) -> Database:
    from store import Database
    from store.migrate import ensure_schema

    ensure_schema(config.database_url)
    return Database(config.database_url)


def _when(moment: float | None, config: Settings) -> str:
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, config.zone).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_(as_json: AsJson = False) -> None:
    """Every key's endpoints: URL, events, whether disabled (never the secret)."""
    from store.webhooks import EndpointStore

    config = settings()
    with exits():
        endpoints = EndpointStore(_database(config)).listed(None)
    if as_json:
        print_json({"webhooks": [{**e.public(), "owner": e.owner} for e in endpoints]})
        return
    table = Table("id", "owner", "url", "events", "state", box=None)
    for e in endpoints:
        state = f"disabled {_when(e.disabled_at, config)}" if e.disabled_at else "enabled"
        if e.failing_since and not e.disabled_at:
            state += f", failing since {_when(e.failing_since, config)}"
        table.add_row(str(e.id), e.owner, e.url, ",".join(e.events or ("all",)), state)
    Console().print(table)


@app.command()
def deliveries(
    webhook_id: Annotated[int, typer.Argument(help="the endpoint's id")],
    status: Annotated[
        str | None, typer.Option(help="only pending, delivered or failed deliveries")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="newest first, at most")] = 50,
    as_json: AsJson = False,
) -> None:
    """The events sent to WEBHOOK_ID, newest first, with each attempt's answer."""
    from store.deliveries import DeliveryStatus, DeliveryStore
    from store.webhooks import EndpointStore

    config = settings()
    try:
        wanted = DeliveryStatus(status) if status is not None else None
    except ValueError:
        fail("status: one of pending, delivered, failed", BAD_INPUT)
    with exits():
        db = _database(config)
        if EndpointStore(db).get(webhook_id, None) is None:
            fail(f"webhook_id: no webhook {webhook_id}", BAD_INPUT)
        log = DeliveryStore(db).log(webhook_id, status=wanted, limit=limit)
    if as_json:
        print_json({"deliveries": log})
        return
    table = Table("delivery", "webhook-id", "type", "about", "status", "attempts", box=None)
    for d in log:
        tries = [str(a["status_code"] or a["answer"][:40]) for a in d["attempts"]]
        row = [str(d["id"]), d["webhook_id"], d["type"], str(d["subject_id"]), d["status"]]
        table.add_row(*row, f"{len(tries)}: {', '.join(tries)}" if tries else "0")
    Console().print(table)


@app.command()
def retry(
    webhook_id: Annotated[int, typer.Argument(help="the endpoint's id")],
    delivery_id: Annotated[int, typer.Argument(help="the delivery's id (webhook deliveries)")],
) -> None:
    """Send a delivery again under its same webhook-id, its retries starting over (a
    disabled endpoint is enabled again)."""
    from store.deliveries import DeliveryStore

    config = settings()
    with exits():
        if not DeliveryStore(_database(config)).replay(webhook_id, delivery_id):
            fail(f"delivery_id: no delivery {delivery_id} of webhook {webhook_id}", BAD_INPUT)
    typer.echo(f"delivery {delivery_id} of webhook {webhook_id} is pending again")
