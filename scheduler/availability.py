"""Whether Redis takes writes: what an error that means "cannot now" looks like, and a
probe that writes.

A Redis can answer ``PING`` and still refuse every write: a master demoted to replica
after a fail-over answers ``READONLY``, one at ``maxmemory`` with ``noeviction`` answers
``OOM``, one loading its data after a restart answers ``LOADING``. Enqueueing then would
store a row whose dispatch cannot be published, so the producers ask
:func:`require_writable` first and answer 503 (the API) or exit 1 (the CLI) with the
reason, storing nothing.
"""

from __future__ import annotations

from redis import Redis
from redis.exceptions import (
    BusyLoadingError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: written (and expiring at once) by the probe: any write would do
PROBE_KEY = "nq:probe:writable"

_REFUSALS = {"READONLY": "a read-only replica", "OOM": "out of memory", "LOADING": "loading"}


class RedisRefusesWrites(RedisError):
    """Redis answers but takes no write now; ``why`` in words (read-only, out of memory)."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"Redis refuses writes ({why})")


def redis_away(error: BaseException) -> bool:
    """Whether ``error`` says Redis cannot be reached or takes no writes now."""
    if isinstance(
        error,
        (
            RedisConnectionError,
            RedisTimeoutError,
            ReadOnlyError,
            OutOfMemoryError,
            BusyLoadingError,
            RedisRefusesWrites,
        ),
    ):
        return True
    return isinstance(error, ResponseError) and str(error).split(" ", 1)[0] in _REFUSALS


def require_writable(client: Redis) -> None:
    """One write to Redis; raises :class:`RedisRefusesWrites` if it is refused, or the
    connection error if Redis cannot be reached (``LOADING`` is one, for redis-py)."""
    try:
        client.set(PROBE_KEY, b"1", px=1000)
    except ReadOnlyError as error:
        raise RedisRefusesWrites(_REFUSALS["READONLY"]) from error
    except OutOfMemoryError as error:
        raise RedisRefusesWrites(_REFUSALS["OOM"]) from error
