"""What every command shares: settings at the edge, errors to exit codes, JSON output.

An error a person meets in their first hour — no Redis, a database that cannot be
opened, a port already taken — is one line that says what to change, not a driver's
traceback or message.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import ValidationError

from config.settings import Settings, get_settings
from providers.base import InvalidRequest, MissingCredentials

if TYPE_CHECKING:
    from store.db import DatabaseUnavailable
    from tasks.runtime import Runtime

BAD_INPUT = 2
FAILURE = 1


def fail(message: str, code: int = FAILURE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings; a value that does not parse exits 2 naming its variable,
    and a ``NOTIFYQ_*`` name that is no setting but close to one is warned about once."""
    from config.names import misspelt_here

    try:
        config = get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "NOTIFYQ_" + str(first["loc"][0]).upper() if first.get("loc") else "settings"
        fail(f"{name}: {first['msg']}", BAD_INPUT)
    for misspelling in misspelt_here():
        warn(str(misspelling))
    return config


def build_runtime() -> Runtime:
    """The parts a command works with, built from the process's settings (imported when
    a command runs, so ``notifyq --help`` starts without them)."""
    from tasks.runtime import Runtime

    return Runtime.build(settings())


def without_password(url: str) -> str:
    """``url`` as an error may show it: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def redis_answers(config: Settings) -> bool:
    """Whether the Redis of NOTIFYQ_REDIS_URL answers a PING within a second."""
    from redis.exceptions import RedisError

    from scheduler.connect import redis_client

    client = redis_client(config.redis_client_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


def no_redis(config: Settings) -> str:
    return (
        f"no Redis answers at {without_password(config.redis_url)} (NOTIFYQ_REDIS_URL): "
        "start one (redis-server --daemonize yes), or set NOTIFYQ_REDIS_URL to yours"
    )


def unopenable(exc: DatabaseUnavailable) -> str:
    return f"{exc}; set NOTIFYQ_DATABASE_URL to a database this user can open"


@contextmanager
def exits() -> Iterator[None]:
    """Bad input → exit 2 with the field; known operational failures → exit 1."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import SQLAlchemyError

    from scheduler.availability import RedisRefusesWrites
    from store.db import DatabaseUnavailable

    try:
        yield
    except InvalidRequest as exc:
        fail(str(exc), BAD_INPUT)
    except MissingCredentials as exc:
        fail(str(exc), FAILURE)
    except DatabaseUnavailable as exc:
        fail(unopenable(exc), FAILURE)
    except (RedisConnectionError, RedisTimeoutError):
        fail(no_redis(settings()), FAILURE)
    except RedisRefusesWrites as exc:
        fail(f"{exc}: nothing was done; try again once it takes writes", FAILURE)
    except (RedisError, SQLAlchemyError, OSError) as exc:
        fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", FAILURE)


def port_taken(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (bound as uvicorn binds, with
    SO_REUSEADDR, so a port in TIME_WAIT after a restart counts as free)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        return False  # the server itself will say the address is wrong
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def require_free_port(host: str, port: int, what: str, option: str = "--port") -> None:
    if port and port_taken(host, port):
        fail(
            f"port {port} on {host} is already in use (another {what}?): "
            f"stop what listens there, or choose another with {option}"
        )


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
