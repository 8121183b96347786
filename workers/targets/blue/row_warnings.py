"""Blue's row warnings ("Row N: ... THIS ROW SKIPPED") parsed and tied to their records.

The vendor doc's warning table: an ID that is too long, invalid data, a missing
ID, or an ID with an apostrophe, a comma or '||||||' make Blue skip the row; a
long non-ID field is truncated and the row kept. Row numbers count from 0
within the rows of the call that answered them (the doc's example is "Row 0").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workers.targets.base import Record

_ROW = re.compile(r"\bRow\s+(\d+)\b(?:\s*\([^)]*\))?\s*:", re.IGNORECASE)
_SKIPPED = (
    "this row skipped",
    "was not imported",
    "missing id on",
    "id field contains",
)


@dataclass(frozen=True)
class RowWarning:
    row: int | None  # None: a warning about the import, not one row
    text: str  # as Blue wrote it
    skipped: bool


def parse(text: str) -> list[RowWarning]:
    """Every warning in Blue's text: one per line, and one per "Row N:" within a line."""
    found: list[RowWarning] = []
    for line in text.splitlines():
        starts = [m.start() for m in _ROW.finditer(line)]
        head = line[: starts[0]] if starts else line
        if head.strip():
            found.append(RowWarning(None, " ".join(head.split()), False))
        for begin, end in zip(starts, [*starts[1:], len(line)], strict=False):
            found.append(_row_warning(" ".join(line[begin:end].split())))
    return found


def _row_warning(piece: str) -> RowWarning:
    match = _ROW.match(piece)
    lowered = piece.lower()
    skipped = any(phrase in lowered for phrase in _SKIPPED)
    return RowWarning(int(match.group(1)) if match else None, piece, skipped)


@dataclass
class Outcome:
    """What Blue said about the rows of one import: rows it skipped and rows it warned about."""

    rejected: list[tuple[int, str]]  # (index in the unit, Blue's reason)
    warnings: list[str]

    @classmethod
    def empty(cls) -> Outcome:
        return cls([], [])

    def add(self, text: str, records: list[Record], sent: range, id_column: str) -> None:
        """Record the warnings of a call that sent records[sent.start:sent.stop]."""
        for warning in parse(text):
            if warning.row is None or warning.row >= len(sent):
                self.warnings.append(warning.text)
                continue
            index = sent[warning.row]
            if warning.skipped:
                self.rejected.append((index, f"Blue skipped the row: {warning.text}"))
            else:
                record_id = records[index].get(id_column, "?")
                self.warnings.append(
                    f"record {index + 1} ({id_column}={record_id}): {warning.text}"
                )
