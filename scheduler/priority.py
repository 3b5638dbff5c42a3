"""Priority classes: what matters now goes before what can wait.

``urgent`` (a verification's codes), ``normal`` (a single notification, unless it asks
otherwise) and ``bulk`` (a campaign's rows). The class is stored on the row and decides
three things along the send path: which broker queue carries the row's dispatch message
(worker/queues.py), how much of a worker's call budget and connection pools it may hold
(tasks/budget.py), and whether it takes a provider-wide rate slot first or only what the
others leave (scheduler/rates.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol


class Priority(StrEnum):
    URGENT = "urgent"
    NORMAL = "normal"
    BULK = "bulk"

    @classmethod
    def parse(cls, value: object) -> Priority:
        """The class ``value`` names; ValueError listing the three names otherwise."""
        try:
            return cls(value)  # type: ignore[arg-type]  # anything: refused below if no name
        except ValueError:
            raise ValueError(f"must be one of {', '.join(p.value for p in cls)}") from None


#: most urgent first: the order workers take the classes in
ORDER = (Priority.URGENT, Priority.NORMAL, Priority.BULK)
#: the class of a request that names none (a single notification)
DEFAULT = Priority.NORMAL


class Classed(Protocol):
    """A row, or anything else, that carries its class."""

    @property
    def priority(self) -> str: ...


def any_bulk(rows: Iterable[Classed]) -> bool:
    """Whether a batch of rows holds bulk work: a dispatch message carries one class, so
    one bulk row makes the whole batch count as bulk."""
    return any(Priority(row.priority) is Priority.BULK for row in rows)
