"""``notifyq verify create | check | show | expire``: verification codes from the shell.

The code is never printed: ``create`` prints the verification's id; the person who
receives the code gives it to ``check`` (asked for without echo when ``--code`` is not
given, so it stays out of the shell's history and the process list).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from cli.common import BAD_INPUT, FAILURE, build_runtime, exits, fail, print_json
from cli.options import AsJson, Id

app = typer.Typer(
    help="Verification codes: send one by SMS or voice, check what the person typed.",
    no_args_is_help=True,
)


@contextmanager
def refusals() -> Iterator[None]:
    """What :func:`exits` says, and a verification refused: an unknown id is bad input
    (exit 2), too many codes or any other refusal a failure (exit 1), each one line."""
    from tasks.verifications import NoSuchVerification, TooManyRequests, VerificationError

    with exits():
        try:
            yield
        except NoSuchVerification as exc:
            fail(f"id: {exc}", BAD_INPUT)
        except TooManyRequests as exc:
            fail(f"to: too many codes for this number; retry in {exc.retry_after:.0f} s", FAILURE)
        except VerificationError as exc:
            fail(str(exc), FAILURE)


@app.command()
def create(
    to: Annotated[str, typer.Option("--to", help="the number to verify, any usual spelling")],
    channel: Annotated[str, typer.Option(help="sms or voice")] = "sms",
    template: Annotated[
        str | None,
        typer.Option(help="SMS text with {$var}; ihuyi text with {code}; jumdata template id"),
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="sms: apispace-sms; voice: ihuyi or jumdata")
    ] = None,
    length: Annotated[int | None, typer.Option(help="digits, 4 to 8")] = None,
    ttl: Annotated[int | None, typer.Option(help="seconds the code is valid, 60 to 3600")] = None,
    purpose: Annotated[
        str | None, typer.Option(help="a new code for the same purpose cancels the old one")
    ] = None,
    voice_after: Annotated[
        int | None,
        typer.Option("--voice-after", help="with sms: call with the code N s later if unchecked"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Send a new code; prints the verification's id (never the code)."""
    from tasks.verifications import create_verification

    with refusals():
        created = create_verification(
            to,
            channel,
            template=template,
            provider=provider,
            length=length,
            ttl=ttl,
            purpose=purpose,
            voice_after=voice_after,
            runtime=build_runtime(),
        )
    if as_json:
        print_json(created.public())
    else:
        typer.echo(created.id)


@app.command()
def check(
    verification_id: Id,
    code: Annotated[
        str | None, typer.Option("--code", help="the code (asked for, unechoed, if not given)")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Check a code: approved, denied (attempts left), expired or too_many_attempts.
    Exit 0 only when approved."""
    from tasks.verifications import APPROVED, check_verification

    if code is None:
        code = typer.prompt("code", hide_input=True)
    with refusals():
        answer = check_verification(verification_id, code.strip(), runtime=build_runtime())
    if as_json:
        print_json(answer.public())
    else:
        left = f" ({answer.attempts_left} attempts left)" if answer.status == "denied" else ""
        typer.echo(f"{answer.status}{left}")
    if answer.status != APPROVED:
        raise typer.Exit(FAILURE)


@app.command()
def show(
    verification_id: Id,
) -> None:
    """The verification (number masked) and its notification's status, as JSON."""
    from tasks.verifications import verification_view

    with exits():
        view = verification_view(build_runtime(), verification_id)
    if view is None:
        fail(f"id: no verification {verification_id}", BAD_INPUT)
    print_json(view)


@app.command()
def expire() -> None:
    """End the pending verifications past their time (their unsent codes cancelled and
    erased); prints how many. For a periodic job."""
    from tasks.verifications import expire_due

    with exits():
        typer.echo(expire_due(build_runtime()))
