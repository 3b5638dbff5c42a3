"""``notifyq suppress add | list | remove | campaign``: numbers never to be called."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.common import BAD_INPUT, build_runtime, exits, fail, print_json
from cli.options import AsJson, Id, Number, OneProvider

app = typer.Typer(
    help="Suppressed numbers: an opt-out, or a number a provider reported bad.",
    no_args_is_help=True,
)


@app.command()
def add(
    to: Number,
    provider: OneProvider = None,
    reason: Annotated[str | None, typer.Option(help="one word, default opt-out")] = None,
    as_json: AsJson = False,
) -> None:
    """Never call NUMBER again (through PROVIDER, or any)."""
    from tasks import suppressions

    with exits():
        view, created = suppressions.add(
            build_runtime(), to, provider=provider, reason=reason, source="cli"
        )
    if as_json:
        print_json({**view.public(), "created": created})
    else:
        typer.echo(
            f"{view.public()['to']} suppressed ({view.reason})" + ("" if created else ", already")
        )


@app.command("list")
def list_(
    provider: Annotated[str | None, typer.Option(help="only this provider's")] = None,
    to: Annotated[str | None, typer.Option("--to", help="one number's suppressions")] = None,
    after: Annotated[int, typer.Option(help="the page after this cursor")] = 0,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
    as_json: AsJson = False,
) -> None:
    """Suppressed numbers (masked), oldest first."""
    from tasks import suppressions

    with exits():
        runtime = build_runtime()
        if to is not None:
            views, cursor = suppressions.lookup(runtime, to), None
        else:
            views, cursor = suppressions.page(runtime, provider=provider, after=after, limit=limit)
    rows = [v.public() for v in views]
    if as_json:
        print_json({"suppressions": rows, "next": cursor})
        return
    table = Table("number", "provider", "reason", "source", box=None)
    for row in rows:
        table.add_row(row["to"], row["provider"] or "all", row["reason"], row["source"])
    Console().print(table)
    if cursor is not None:
        typer.echo(f"more: --after {cursor}")


@app.command()
def remove(
    to: Number,
    provider: Annotated[str | None, typer.Option(help="lift this provider's only")] = None,
) -> None:
    """Lift NUMBER's suppressions."""
    from tasks import suppressions

    with exits():
        removed = suppressions.remove(build_runtime(), to, provider=provider)
    if not removed:
        fail("to: the number is not suppressed", BAD_INPUT)
    typer.echo(f"lifted {removed}")


@app.command()
def campaign(campaign_id: Id) -> None:
    """How many of a campaign's rows ended failed because their number is suppressed."""
    from tasks import suppressions

    with exits():
        typer.echo(suppressions.suppressed_in_campaign(build_runtime(), campaign_id))
