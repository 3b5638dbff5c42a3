"""``notifyq demo``: what ``make demo`` runs after set-up."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def demo(
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="leave everything running, with Flower, until Ctrl-C or SIGTERM"
        ),
    ] = False,
) -> None:
    """Run the whole system with the sandbox and a reminder campaign through all five
    providers: caps, a calling window and a faulting provider at work, live."""
    from cli.showcase import Demo

    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough for the summary table
        console = Console(width=max(console.width, 132))
    raise typer.Exit(Demo(console, keep=keep).run())
