"""``notifyq dev``: the whole system on this machine, to try it out from a shell.

One command starts the provider sandbox with every provider pointed at it, the API, a
worker and beat, wired together (harness/wiring.py), on this shell's settings otherwise:
its Redis, its database, its API keys. So ``notifyq send`` and ``notifyq status`` typed
beside it reach the same system, and nothing reaches a real provider or a real phone.
The processes run in this folder (relative paths and ``.env`` mean what they mean to the
shell), their logs go to ``var/dev/``, and Ctrl-C or SIGTERM stops them all; a process
that dies takes the others with it, its log named.

``notifyq dev code ID`` reads the code a verification sent from the sandbox's ledger of
what each "phone" received: the API never shows a code, and here nobody else can.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import exits, fail, no_redis, redis_answers, require_free_port, settings, warn
from cli.options import Id

if TYPE_CHECKING:
    from harness.signals import Interrupt
    from harness.supervise import Proc, Stack

LOGS = Path("var") / "dev"
HOST = "127.0.0.1"
#: a voice provider's text carries the code among its words (ihuyi: 您的验证码是482913，…)
CODE_IN_TEXT = re.compile(r"\d{4,8}")

app = typer.Typer(
    help="The sandbox, the API, a worker and beat, wired together (no real provider).",
    invoke_without_command=True,
)


@app.callback()
def dev(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="the API's port")] = 8000,
    sandbox_port: Annotated[int, typer.Option(help="the provider sandbox's port")] = 9000,
) -> None:
    """Start the provider sandbox (every provider pointed at it), the API, a worker and
    beat on this shell's settings; logs in var/dev/; Ctrl-C stops them all."""
    if ctx.invoked_subcommand is not None:
        return
    raise typer.Exit(_run(port, sandbox_port))


def _run(port: int, sandbox_port: int) -> int:
    import secrets

    from harness.signals import sigterm_as_interrupt
    from harness.supervise import Stack
    from harness.wiring import sandboxed
    from store.migrate import ensure_schema

    config = settings()
    if not redis_answers(config):
        fail(no_redis(config))
    require_free_port(HOST, port, "notifyq api")
    require_free_port(HOST, sandbox_port, "notifyq sandbox", "--sandbox-port")
    with exits():
        ensure_schema(config.database_url)  # a store that cannot be opened: said here, once
    sandbox_url, api_url = f"http://{HOST}:{sandbox_port}", f"http://{HOST}:{port}"
    env = sandboxed(sandbox_url, api_url)
    given = config.model_fields_set
    if "verify_secret" not in given:  # codes made under this run are checked under it
        env["NOTIFYQ_VERIFY_SECRET"] = secrets.token_urlsafe(32)
    if "worker_metrics_port" not in given:  # beside another worker on this machine
        env["NOTIFYQ_WORKER_METRICS_PORT"] = "0"
    LOGS.mkdir(parents=True, exist_ok=True)
    stack = Stack(LOGS.resolve(), env, cwd=Path.cwd(), tied=True)
    with sigterm_as_interrupt() as interrupt:
        try:
            with stack.together():
                stack.sandbox(sandbox_port)
                stack.api(port)
                stack.worker()
                stack.beat()
            _started(sandbox_url, api_url, bool(config.api_keys))
            return _watch(stack, interrupt)
        except KeyboardInterrupt:
            typer.echo("notifyq dev: stopping everything it started")
            return 0
        except (RuntimeError, TimeoutError) as exc:
            typer.echo(f"error: {_first_failure(stack, exc)}", err=True)
            return 1
        finally:
            stack.stop()


def _started(sandbox_url: str, api_url: str, keyed: bool) -> None:
    typer.echo(
        f"notifyq dev: every provider → the sandbox at {sandbox_url}; the API at {api_url} "
        f"(/docs, /ui); a worker; beat. Logs in {LOGS}/. Ctrl-C stops them all."
    )
    if not keyed:
        warn("NOTIFYQ_API_KEYS is empty: every /v1 request gets 401 until it is set")


def _watch(stack: Stack, interrupt: Interrupt) -> int:
    """Until Ctrl-C or SIGTERM (KeyboardInterrupt), or until a process dies (1)."""
    while True:
        interrupt.check()
        for proc in stack.procs:
            if not proc.alive():
                typer.echo(
                    f"error: the {proc.name} stopped (exit {proc.process.returncode}): "
                    f"{_last_line(proc.text())} (log: {_log(proc)})",
                    err=True,
                )
                return 1
        time.sleep(0.5)


def _first_failure(stack: Stack, exc: Exception) -> str:
    """What did not start, in one line: the process that exited (its last words), or the
    one that did not become ready in time."""
    for proc in stack.procs:
        if not proc.alive():
            return (
                f"the {proc.name} did not start (exit {proc.process.returncode}): "
                f"{_last_line(proc.text())} (log: {_log(proc)})"
            )
    return f"{str(exc).splitlines()[0]} (logs in {LOGS}/)"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _log(proc: Proc) -> str:
    return str(LOGS / proc.log.name)


@app.command()
def code(
    verification_id: Id,
    sandbox_port: Annotated[int, typer.Option(help="the sandbox notifyq dev runs")] = 9000,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the code to be sent")] = 120,
) -> None:
    """The code verification ID sent, as the sandbox's phone received it.

    The sandbox stands in for the phone here; a real provider's phone is a real person's,
    and no command reads it."""
    from providers.numbers import mainland
    from store import Database, NotificationStore, Status
    from store.migrate import ensure_schema
    from store.verifications import VerificationStore

    config = settings()
    deadline = time.monotonic() + timeout
    with exits():
        ensure_schema(config.database_url)
        db = Database(config.database_url)
        verification = VerificationStore(db).get(verification_id)
        if verification is None or verification.notification_id is None:
            fail(f"id: no verification {verification_id} with a code to send", 2)
        notifications = NotificationStore(db)
        while True:  # its provider_ref is recorded with ``sent``
            row = notifications.get(verification.notification_id)
            assert row is not None
            if row.provider_ref or Status(row.status).is_final or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    if not row.provider_ref:
        fail(f"verification {verification_id}'s code was not sent: {row.status} {row.reason}")
    typer.echo(_code_in_sandbox(sandbox_port, row.provider, row.provider_ref, mainland(row.to)))


def _code_in_sandbox(port: int, provider: str, ref: str, number: str) -> str:
    """The code in the call the sandbox placed to ``number`` under our reference ``ref``:
    the call's own, or (APISpace SMS, whose one request carries several numbers' codes)
    the call's followed by a digest of the number (providers/apispace.py ``sms_ref``)."""
    import httpx

    url = f"http://{HOST}:{port}/_sandbox/calls"
    try:
        calls = httpx.get(url, params={"provider": provider}, timeout=10).json()["calls"]
    except (httpx.HTTPError, ValueError, KeyError):
        fail(f"no sandbox answers at {url}: the code is read from the one notifyq dev runs")
    for call in reversed(calls):
        theirs = call["ref"]
        ours = theirs is not None and (ref == theirs or ref.startswith(f"{theirs}:"))
        if ours and call["placed"] and call["number"] == number:
            fields = call["fields"]
            if fields.get("params"):
                return str(fields["params"][0])
            found = CODE_IN_TEXT.search(str(fields.get("content") or ""))
            if found:
                return found.group()
    fail(f"the sandbox at {url} holds no call {ref} with a code")
