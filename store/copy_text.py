"""Rows that share most of their values, as one ``COPY … FROM STDIN`` text payload.

A campaign chunk is thousands of rows that differ in three columns (number, content,
variables) and share a dozen. psycopg's ``write_row`` formats every value of every row
in Python, and each row's variables were first encoded as JSON on their own: on
PostgreSQL that was most of an import's client CPU (``bench/campaign.py``, py-spy),
competing for the interpreter with the reading and the checking of the next chunk.

Here the payload is built a column at a time: the shared values are formatted once into
a tail every line ends with; a column of text is written as it is; a column of string
lists is written as JSON by one format per row. Both only where the whole column holds
nothing that JSON or COPY would escape (a quote, a backslash, a control character) —
one search over the column's joined text. A column holding any of those takes the
escaping path, value by value, and stores the same text.

COPY's text format (PostgreSQL's documentation, "COPY", "Text Format"): fields split by
a tab, rows by a newline, ``\\N`` for NULL, and backslash, newline, carriage return and
tab escaped by a backslash.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
from typing import Any

#: what the JSON encoder or COPY's text format would write otherwise than as it stands
_SPECIAL = re.compile(r'[\x00-\x1f"\\]')
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
NULL = "\\N"
#: ``json.dumps(value, ensure_ascii=False)``, its encoder made once
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def field(value: Any) -> str:
    """One value as COPY's text format writes it."""
    if value is None:
        return NULL
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float):
        return repr(value)
    return str(value).translate(_ESCAPES)


def text_column(values: list[Any]) -> list[str]:
    """A text column's values as COPY fields."""
    if values.count(None) == len(values):  # a campaign's rows share their content
        return [NULL] * len(values)
    try:
        if not _SPECIAL.search("".join(values)):
            return values
    except TypeError:  # a None (or a value that is not text) among them
        pass
    return [field(v) for v in values]


def json_list_column(values: list[Sequence[Any]]) -> list[str]:
    """A column of lists (or tuples) of strings as COPY fields holding their JSON
    (``["a", "b"]``, the text ``json.dumps`` writes)."""
    try:
        plain = not _SPECIAL.search("".join(chain.from_iterable(values)))
    except TypeError:  # a value that is not a string: the encoder's way
        plain = False
    if plain:
        return ['["' + '", "'.join(v) + '"]' if v else "[]" for v in values]
    return [_to_json(list(v)).translate(_ESCAPES) for v in values]


def payload(columns: Sequence[list[str]], shared: Iterable[Any]) -> str:
    """The COPY text of rows whose first fields are ``columns`` (each a list of COPY
    fields, one per row) and whose other fields are ``shared``'s values, the same in
    every row."""
    if not columns or not columns[0]:
        return ""
    tail = [field(v) for v in shared]
    fields = [*columns, repeat("\t".join(tail), len(columns[0]))] if tail else columns
    return "\n".join(map("\t".join, zip(*fields, strict=False))) + "\n"
