"""A request a store refuses names the field it refuses, so that a caller answers it as
bad input on that field (HTTP 422, the command line's exit code 2)."""

from __future__ import annotations


class BadField(ValueError):
    """A request refused for ``field``, with why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
