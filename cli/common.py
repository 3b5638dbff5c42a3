"""What every command shares: settings at the edge, errors to exit codes, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from pydantic import ValidationError

from config.settings import Settings, get_settings
from providers.base import InvalidRequest, MissingCredentials

BAD_INPUT = 2
FAILURE = 1


def fail(message: str, code: int = FAILURE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "NOTIFYQ_" + str(first["loc"][0]).upper() if first.get("loc") else "settings"
        fail(f"{name}: {first['msg']}", BAD_INPUT)


@contextmanager
def exits() -> Iterator[None]:
    """Bad input → exit 2 with the field; known operational failures → exit 1."""
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except InvalidRequest as exc:
        fail(str(exc), BAD_INPUT)
    except MissingCredentials as exc:
        fail(str(exc), FAILURE)
    except (RedisError, SQLAlchemyError, OSError) as exc:
        fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", FAILURE)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")


def parse_options(pairs: list[str], flag: str = "--option") -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            fail(f"{flag.lstrip('-')}: {pair!r} is not name=value", BAD_INPUT)
        options[name.strip()] = value
    return options


Command = Callable[..., None]
