"""Provider callbacks that arrive while the store is away, kept in Redis until it is back.

A provider pushes a receipt a few times and then gives up: a callback refused for a
minute's store outage is a receipt lost, its notification left ``sent`` until the
receipt timeout. So a callback the store cannot take is written here (Redis with AOF in
compose) and only then answered ``success``; the API applies the journal once the store
answers again (api/journal_replay.py), as the callback would have been applied —
idempotently, so an entry applied twice (two API processes replaying at once, a crash
between applying and removing) changes nothing the second time. If Redis cannot take
it either, the callback is answered with a failure and the provider tries again.

A report page pulled (so deleted on the provider's side) just as the store went away
is kept here the same way (:data:`REPORT_PAGE`, tasks/reports.py).

Entries are fields of one hash, each under an id of its own: a replay removes exactly
the entry it applied, whatever other processes add or remove meanwhile.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from redis import Redis

#: the hash of waiting callbacks: entry id → ``{"route", "data", "at"}`` (JSON)
JOURNAL_KEY = "nq:callbacks:journal"
#: entries that could not be applied for a reason other than the store being away
FAILED_KEY = "nq:callbacks:journal:failed"
#: the route of a pulled report page (``report:<provider>``, its body as text) that the
#: store could not journal: applied by copying it into the store's own journal
REPORT_PAGE = "report:"


@dataclass(frozen=True)
class Entry:
    """One journalled callback: which route took it, its body as decoded (form or JSON)."""

    id: str
    route: str
    data: Any
    at: float


class CallbackJournal:
    """The journal in Redis (see the module docstring)."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    def write(self, route: str, data: Any) -> str:
        """Keep one callback; returns its entry id once Redis has it."""
        entry_id = uuid.uuid4().hex
        record = json.dumps({"route": route, "data": data, "at": time.time()}, ensure_ascii=False)
        self.client.hset(JOURNAL_KEY, entry_id, record)
        return entry_id

    def waiting(self) -> int:
        return int(self.client.hlen(JOURNAL_KEY))  # type: ignore[arg-type]

    def entries(self, count: int = 100) -> Iterator[Entry]:
        """Every waiting entry, read a page at a time."""
        for raw_id, raw in self.client.hscan_iter(JOURNAL_KEY, count=count):
            record = json.loads(raw)
            yield Entry(_text(raw_id), record["route"], record["data"], float(record["at"]))

    def remove(self, entry: Entry) -> None:
        self.client.hdel(JOURNAL_KEY, entry.id)

    def set_aside(self, entry: Entry, why: str) -> None:
        """Move an entry that cannot be applied out of the way, kept with the reason."""
        record = {"route": entry.route, "data": entry.data, "at": entry.at, "error": why}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(FAILED_KEY, entry.id, json.dumps(record, ensure_ascii=False))
        pipe.hdel(JOURNAL_KEY, entry.id)
        pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
