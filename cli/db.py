"""``notifyq db upgrade``."""

from __future__ import annotations

import typer

from cli.common import exits, settings

app = typer.Typer(help="The database schema.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Apply the database migrations."""
    from store.migrate import head
    from store.migrate import upgrade as run_upgrade

    config = settings()
    with exits():
        run_upgrade(config.database_url)
    typer.echo(f"database at revision {head()}")
