"""``notifyq ihuyi balance | template add TEXT | template delete ID``."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from cli.common import exits, fail, settings

app = typer.Typer(help="ihuyi account tools.", no_args_is_help=True)
templates = typer.Typer(help="Voice templates filed with ihuyi.", no_args_is_help=True)
app.add_typer(templates, name="template")


def _client():  # type: ignore[no-untyped-def]
    from providers import registry
    from providers.http import Transport
    from providers.ihuyi import Ihuyi

    config = settings()
    client = registry.build("ihuyi", config)
    assert isinstance(client, Ihuyi)
    return config, client, Transport()


def _perform(call):  # type: ignore[no-untyped-def]
    from providers.http import Failure

    _, _, transport = _client()
    answer = transport.perform(call)
    if isinstance(answer, Failure):
        fail(f"ihuyi did not answer ({answer.kind})")
    return answer


@app.command()
def balance() -> None:
    """Remaining voice notifications on the account (GetNum)."""
    with exits():
        _, client, _ = _client()
        result = client.parse_admin(_perform(client.balance_call(time.time())), "num")
    if not result.ok:
        fail(f"ihuyi {result.code}: {result.message}")
    typer.echo(result.value)


@templates.command("add")
def add(
    text: Annotated[str, typer.Argument(metavar="TEXT", help="with 【变量】 where variables go")],
) -> None:
    """File a template (AddTemplate); prints its id. The audit result arrives by callback."""
    from store import Database
    from store.templates import TemplateStore

    with exits():
        config, client, _ = _client()
        if not text.strip():
            fail("TEXT: the template is empty", 2)
        result = client.parse_admin(
            _perform(client.add_template_call(text, time.time())), "templateid"
        )
        if not result.ok or not result.value:
            fail(
                f"ihuyi {result.code}: {result.message}",
                2 if result.code in ("404", "407", "408") else 1,
            )
        from store.migrate import ensure_schema

        ensure_schema(config.database_url)
        TemplateStore(Database(config.database_url)).upsert(
            "ihuyi", result.value, state="pending", content=text
        )
    typer.echo(result.value)


@templates.command("delete")
def delete(template_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Delete a template (DelTemplate)."""
    from store import Database
    from store.templates import TemplateStore

    with exits():
        config, client, _ = _client()
        result = client.parse_admin(_perform(client.delete_template_call(template_id, time.time())))
        if not result.ok:
            fail(f"ihuyi {result.code}: {result.message}", 2 if result.code == "404" else 1)
        from store.migrate import ensure_schema

        ensure_schema(config.database_url)
        TemplateStore(Database(config.database_url)).delete("ihuyi", template_id)
    typer.echo(f"deleted {template_id}")
