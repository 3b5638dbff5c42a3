"""``notifyq send`` and ``notifyq status``."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.common import exits, fail, parse_options, print_json, settings
from cli.options import AsJson, Id, ProviderOptions, TemplateId

#: how often ``status --wait`` reads the row again (a person watching: a quarter second)
WAIT_POLL = 0.25


def register(app: typer.Typer) -> None:
    app.command()(send)
    app.command()(status)


def send(
    provider: Annotated[
        str, typer.Argument(help="apispace-voice, apispace-sms, ihuyi, jumdata or itniotech")
    ],
    to: Annotated[str, typer.Option("--to", help="the recipient's number, any usual spelling")],
    template: TemplateId = None,
    content: Annotated[
        str | None, typer.Option(help="the full text (ihuyi; APISpace SMS msg)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="a template variable (repeatable)")
    ] = None,
    option: ProviderOptions = None,
    key: Annotated[
        str | None, typer.Option("--key", help="idempotency key: the same key never sends twice")
    ] = None,
    not_before: Annotated[
        str | None, typer.Option("--not-before", help="ISO 8601: not before this moment")
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(help="urgent, normal (the default) or bulk: which work it goes before"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Validate and enqueue one notification; prints its id."""
    from scheduler.availability import require_writable
    from tasks.enqueue import enqueue
    from tasks.runtime import Runtime

    config = settings()
    options = parse_options(option or [])
    with exits():
        runtime = Runtime.build(config)
        # no Redis, or one that refuses writes: say so, and store nothing no worker is told of
        require_writable(runtime.redis)
        result = enqueue(
            provider,
            to,
            template=template,
            content=content,
            params=param or [],
            options=options,
            idempotency_key=key,
            not_before=not_before,
            priority=priority,
            runtime=runtime,
        )
    if as_json:
        print_json({"id": result.id, "status": result.status.value, "created": result.created})
    else:
        typer.echo(result.id)


def status(
    notification_id: Id,
    as_json: AsJson = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="first wait until it is final: delivered, undelivered, failed, cancelled "
            "or unknown",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="with --wait: seconds before giving up (exit 1)")
    ] = 120.0,
) -> None:
    """The notification and its history."""
    from store import Database, NotificationStore, Status
    from store.migrate import ensure_schema
    from tasks.views import notification_view

    config = settings()
    deadline = time.monotonic() + timeout
    with exits():
        ensure_schema(config.database_url)
        store = NotificationStore(Database(config.database_url))
        view = notification_view(store, notification_id)
        while wait and view is not None and not Status(view["status"]).is_final:
            if time.monotonic() > deadline:
                break
            time.sleep(WAIT_POLL)
            view = notification_view(store, notification_id)
    if view is None:
        fail(f"id: no notification {notification_id}", 2)
    _show(view, as_json)
    if wait and not Status(view["status"]).is_final:
        fail(f"notification {notification_id} is still {view['status']} after {timeout:g} s")


def _show(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(view)
        return
    console = Console()
    console.print(
        f"[bold]#{view['id']}[/] {view['provider']} → {view['to']}  [bold]{view['status']}[/]"
        f"  {view['priority']}" + (f"  ({view['reason']})" if view["reason"] else "")
    )
    if view["next_attempt_at"] and view["status"] in ("deferred", "retrying", "queued"):
        console.print(f"next attempt at {view['next_attempt_at']}")
    table = Table("at", "from", "to", "reason", box=None)
    table.add_row(view["created_at"], "", "queued", "created")
    for event in view["events"]:
        table.add_row(event["at"], event["from"] or "", event["to"], event["reason"] or "")
    console.print(table)
