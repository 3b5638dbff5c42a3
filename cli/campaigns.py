"""``notifyq campaign create | show | pause | resume | cancel``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from cli.common import BAD_INPUT, build_runtime, exits, fail, parse_options, print_json
from cli.options import AsJson, Id, ProviderOptions, TemplateId

app = typer.Typer(
    help="Reminder campaigns from a CSV: one-off (--at) or recurring (--cron).",
    no_args_is_help=True,
)


@app.command()
def create(
    provider: Annotated[
        str,
        typer.Option(
            "--provider", help="apispace-voice, apispace-sms, ihuyi, jumdata or itniotech"
        ),
    ],
    recipients: Annotated[
        Path, typer.Option("--recipients", help="CSV: a 'mobile' column, one column per variable")
    ],
    template: TemplateId = None,
    content: Annotated[
        str | None, typer.Option(help="the full text; {column} is filled from the CSV")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="ISO 8601: start then (default: now)")
    ] = None,
    cron: Annotated[
        str | None, typer.Option("--cron", help="recurring, 'm h dom mon dow' in NOTIFYQ_TIMEZONE")
    ] = None,
    option: ProviderOptions = None,
    rate: Annotated[
        str | None, typer.Option(help="this campaign's throughput cap, e.g. 50/second")
    ] = None,
    name: Annotated[str, typer.Option(help="a name to recognise it by")] = "",
    as_json: AsJson = False,
) -> None:
    """Import the CSV (bad rows are skipped and reported) and schedule the campaign."""
    from tasks.campaigns.intake import CampaignSpec, import_campaign
    from tasks.requests import parse_time

    if not recipients.is_file():
        fail(f"recipients: no file {recipients}", BAD_INPUT)
    errors: list[Any] = []
    start = parse_time(at, "at", errors)
    if errors:
        fail(str(errors[0]), BAD_INPUT)
    spec = CampaignSpec(
        provider=provider,
        name=name or recipients.stem,
        template=template,
        content=content,
        options=parse_options(option or []),
        rate=rate,
        at=start,
        cron=cron,
    )
    with exits(), recipients.open(encoding="utf-8-sig", newline="") as stream:
        result = import_campaign(build_runtime(), spec, stream)
    if as_json:
        print_json(
            {
                "id": result.id,
                "status": result.status,
                "accepted": result.total,
                "rejected": result.rejected,
                "errors": result.errors,
            }
        )
        return
    typer.echo(result.id)
    typer.echo(f"{result.total} accepted, {result.rejected} rejected", err=True)
    for error in result.errors[:10]:
        typer.echo(f"  row {error['row']}: {error['field']}: {error['message']}", err=True)


def _view(runtime: Any, campaign_id: int) -> dict[str, Any]:
    from tasks.campaigns.control import progress

    view = progress(runtime, campaign_id)
    if view is None:
        fail(f"id: no campaign {campaign_id}", BAD_INPUT)
    return view


def _table(view: dict[str, Any]) -> Table:
    table = Table(title=f"campaign {view['id']} · {view['name']} · {view['status']}", box=None)
    table.add_column("status")
    table.add_column("count", justify="right")
    for status, count in sorted(view["counts"].items(), key=lambda kv: -kv[1]):
        table.add_row(status, str(count))
    table.add_row("rejected rows", str(view["rejected"]))
    return table


@app.command()
def show(
    campaign_id: Id,
    as_json: AsJson = False,
    watch: Annotated[
        bool | None,
        typer.Option(
            "--watch/--no-watch", help="live progress until done (default: in a terminal)"
        ),
    ] = None,
) -> None:
    """Counts per status, percent done, rate and ETA — live in a terminal."""
    with exits():
        runtime = build_runtime()
        view = _view(runtime, campaign_id)
        if as_json:
            print_json(view)
            return
        console = Console()
        if watch is None:
            watch = sys.stdout.isatty()
        if watch and view["status"] in ("scheduled", "running", "importing"):
            _watch(console, runtime, campaign_id, view)
            view = _view(runtime, campaign_id)
        console.print(_table(view))
        console.print(
            f"{view['percent']}% done · {view['rate_per_s']}/s"
            + (f" · ETA {view['eta_s']}s" if view["eta_s"] else "")
        )


def _watch(console: Console, runtime: Any, campaign_id: int, view: dict[str, Any]) -> None:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"campaign {campaign_id}", total=view["total"], detail="")
        while True:
            view = _view(runtime, campaign_id)
            waiting = ", ".join(
                f"{k} {v}"
                for k, v in sorted(view["counts"].items())
                if k in ("queued", "deferred", "retrying", "sending")
            )
            bar.update(task, total=view["total"], completed=view["done"], detail=waiting)
            if view["status"] not in ("scheduled", "running", "importing"):
                return
            time.sleep(0.5)


def _control(action: str, campaign_id: int) -> None:
    from tasks.campaigns import control

    with exits():
        runtime = build_runtime()
        try:
            outcome = getattr(control, action)(runtime, campaign_id)
        except control.CampaignStateError as exc:
            fail(f"id: {exc}", BAD_INPUT)
    typer.echo(
        f"campaign {campaign_id}: {action}"
        + (f" ({outcome} notifications cancelled)" if action == "cancel" else "")
    )


@app.command()
def pause(campaign_id: Id) -> None:
    """Stop releasing; what was released but not started goes back to the campaign."""
    _control("pause", campaign_id)


@app.command()
def resume(campaign_id: Id) -> None:
    """Release again from where it stopped."""
    _control("resume", campaign_id)


@app.command()
def cancel(campaign_id: Id) -> None:
    """Cancel every notification not yet handed to a provider; nothing stray goes out."""
    _control("cancel", campaign_id)
