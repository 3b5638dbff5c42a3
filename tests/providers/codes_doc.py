"""docs/codes.md read as data: the one table of every documented provider code and its
outcome, which the tests walk through the clients (so the page and the code agree)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from providers.base import Outcome

PAGE = Path(__file__).resolve().parents[2] / "docs" / "codes.md"


@dataclass(frozen=True)
class Row:
    section: str
    provider: str
    code: str
    meaning: str
    result: str
    notes: str


def rows(section: str) -> list[Row]:
    """The rows of one ``## section`` of the page, in order."""
    out: list[Row] = []
    current = ""
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            continue
        if current != section or not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "provider":
            continue
        out.append(Row(current, *cells[:5]))
    return out


def outcomes(provider: str) -> dict[str, Outcome]:
    """A provider's sending codes → outcome, as the page states them."""
    return {r.code: Outcome(r.result) for r in rows("Sending") if r.provider == provider}
