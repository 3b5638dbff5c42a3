"""The ``notifyq`` command line (docs: README "Commands"): exit 0 on success, 2 on bad
input with a one-line reason naming the field, 1 on any other failure; and the demo.

Top of the house: it may import anything; each command imports its work when it runs,
so the command starts fast.
"""

from __future__ import annotations

import typer

from cli import (
    campaigns,
    caps,
    db,
    demo,
    dev,
    ihuyi,
    keys,
    messages,
    services,
    suppress,
    verify,
    webhook,
)

app = typer.Typer(
    name="notifyq",
    help="Voice-call notifications and SMS verification codes, inside every cap and window.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
messages.register(app)
services.register(app)
app.add_typer(db.app, name="db")
app.add_typer(ihuyi.app, name="ihuyi")
app.add_typer(campaigns.app, name="campaign")
app.add_typer(verify.app, name="verify")
app.add_typer(suppress.app, name="suppress")
app.add_typer(caps.app, name="caps")
app.add_typer(dev.app, name="dev")
app.add_typer(keys.app, name="keys")
app.add_typer(webhook.app, name="webhook")
app.command()(demo.demo)


def main() -> None:
    app()
