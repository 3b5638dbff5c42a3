"""``notifyq db upgrade`` and ``notifyq db prune``."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import exits, print_json, settings
from cli.options import AsJson

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


@app.command()
def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="count what would go; delete nothing")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Delete finished notifications (with their events and receipts), report pulls and
    verifications older than NOTIFYQ_RETENTION_DAYS; beat does it every few minutes.
    A run is bounded: a large backlog takes several."""
    from scheduler.clock import Clock
    from scheduler.connect import redis_client
    from store.db import Database
    from store.migrate import ensure_schema
    from tasks.retention import prune as run_prune

    config = settings()
    with exits():
        ensure_schema(config.database_url)
        db = Database(config.database_url)
        # Redis's clock, as the rows were written on (and the tests' offset, if on)
        clock = Clock(redis_client(config.redis_client_url), control=config.clock_control)
        pruned = run_prune(db, clock.now(), config.retention_days, dry_run=dry_run)
    if as_json:
        print_json(
            {"dry_run": dry_run, "retention_days": config.retention_days, **pruned.as_dict()}
        )
        return
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"{verb} (older than {config.retention_days:g} days): "
        f"{pruned.notifications:,} notification(s) with {pruned.events:,} event(s), "
        f"{pruned.receipts:,} receipt(s), {pruned.report_pulls:,} report pull(s), "
        f"{pruned.verifications:,} verification(s)"
    )
    if pruned.partitions:
        typer.echo(
            f"{'would drop' if dry_run else 'dropped'} {len(pruned.partitions)} events "
            f"partition(s) ({', '.join(pruned.partitions)}), "
            f"{'about ' if dry_run else ''}{pruned.partition_events:,} event(s)"
        )
    if not pruned.complete:
        typer.echo("more is left for the next run")
