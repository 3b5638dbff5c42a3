"""The arguments and options several commands take, declared once so that each reads and
helps the same wherever it appears."""

from __future__ import annotations

from typing import Annotated

import typer

#: the ``--json`` flag of a command that prints what it did: one JSON object, for scripts
AsJson = Annotated[bool, typer.Option("--json", help="one JSON object")]
#: the id a command acts on (a notification's, a campaign's, a verification's)
Id = Annotated[int, typer.Argument(metavar="ID")]
#: the number a command acts on, in any usual spelling
Number = Annotated[str, typer.Argument(metavar="NUMBER")]
#: ``--provider`` where a command acts on every provider unless told one
OneProvider = Annotated[
    str | None, typer.Option(help="one provider only (default: every provider)")
]
#: ``--template``: what a send names its template by
TemplateId = Annotated[
    str | None, typer.Option(help="the provider's template id (or itniotech audio file id)")
]
#: ``--option name=value``, read by :func:`parse_options`
ProviderOptions = Annotated[
    list[str] | None, typer.Option("--option", help="a provider option name=value (repeatable)")
]
