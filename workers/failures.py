"""Why a job failed: its first unit error and its most common errors, with counts.

A failed unit keeps its reason as `last_error` and sends its records to the dead-letter
store with it; a unit that was delivered but had records refused (rows the vendor listed
as refused, or skipped) leaves those reasons only in the dead letters. Both are counted here,
so `importq status` and `importq jobs` can say why any failed or partial job failed.
Reports of one error about different ids or values ("queue item 4a43... failed: Value
'r-7' doesn't fit") count as one kind, shown by the first text seen.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from workers import keys
from workers.jobs import JobState, JobStore, JobView, UnitState

TOP = 3  # most common errors shown
# Dead letters read to count the reasons of records refused inside delivered units:
# enough for the picture, bounded so `importq jobs` stays quick on a huge job.
SCAN_DEAD_LETTERS = 10_000
NO_REASON = "(no reason recorded)"

# What varies between two reports of one error: quoted values, UUIDs, ids holding digits.
# Masked only to count them together; HTTP statuses and short numbers stay (they tell
# errors apart).
_VARYING = re.compile(
    r"'[^']*'|\"[^\"]*\"|\b[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\b"
    r"|\b(?=[\w-]*\d)[\w-]{5,}\b",
    re.IGNORECASE,
)


def kind_of(error: str) -> str:
    """The error with what varies masked: two reports of one error share a kind."""
    return _VARYING.sub("_", error)


@dataclass
class ErrorCount:
    error: str  # the first text seen of its kind, in full
    units: int = 0  # units that ended with an error of this kind
    records: int = 0  # records dead-lettered with it
    variants: int = 1  # distinct texts counted here: the same error about other ids or values


@dataclass(frozen=True)
class Failure:
    first_unit: str
    first_error: str
    errors: list[ErrorCount]  # the most common first
    dead_letters_counted: int = 0  # of the records refused inside delivered units
    dead_letters_total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Tally:
    kinds: dict[str, ErrorCount] = field(default_factory=dict)
    texts: dict[str, set[str]] = field(default_factory=dict)
    first: tuple[str, str] | None = None  # (unit, error)

    def add(self, unit: str, error: str, *, units: int, records: int) -> None:
        kind = kind_of(error)
        count = self.kinds.setdefault(kind, ErrorCount(error, variants=0))
        seen = self.texts.setdefault(kind, set())
        if error not in seen:
            seen.add(error)
            count.variants += 1
        count.units += units
        count.records += records
        self.first = self.first or (unit, error)

    def ranked(self) -> list[ErrorCount]:
        return sorted(self.kinds.values(), key=lambda c: (c.records, c.units), reverse=True)


def why_failed(client: redis.Redis, job: JobView, top: int = TOP) -> Failure | None:
    """The reasons of a failed or partial job, None for any other state."""
    if job.state not in (JobState.FAILED, JobState.PARTIAL):
        return None
    tally = _Tally()
    failed_units, failed_records = set(), 0
    for unit_id, state, error, records in _units(client, job.id):
        if state == UnitState.FAILED:
            failed_units.add(unit_id)
            failed_records += records
            tally.add(unit_id, error or NO_REASON, units=1, records=records)
    rest = max(0, job.records_dead - failed_records)  # refused inside delivered units
    counted = _count_dead_letters(client, job.id, failed_units, tally) if rest else 0
    first_unit, first_error = tally.first or ("", NO_REASON)
    return Failure(first_unit, first_error, tally.ranked()[:top], counted, rest)


def _units(client: redis.Redis, job_id: str) -> list[tuple[str, str, str, int]]:
    """(unit id, state, last error, records) of every unit of the job, in creation order."""
    unit_ids = JobStore(client).unit_ids(job_id)
    pipe = client.pipeline(transaction=False)
    for unit_id in unit_ids:
        pipe.hmget(keys.unit(unit_id), ["state", "last_error", "records"])
    found = []
    for unit_id, (state, error, records) in zip(unit_ids, pipe.execute(), strict=True):
        found.append((unit_id, _text(state), _text(error), int(records or 0)))
    return found


def _count_dead_letters(
    client: redis.Redis, job_id: str, failed_units: set[str], tally: _Tally
) -> int:
    """Count the reasons of records refused in delivered units (failed units are counted)."""
    raw = client.lrange(keys.dead_letters(job_id), 0, SCAN_DEAD_LETTERS - 1)
    seen: set[tuple[str, str]] = set()  # (unit, kind): a unit counts once per kind
    counted = 0
    for entry in map(json.loads, raw):
        unit = str(entry.get("unit", ""))
        if unit in failed_units or entry.get("record") is None:
            continue
        reason = str(entry.get("reason") or NO_REASON)
        new_unit = (unit, kind_of(reason)) not in seen
        seen.add((unit, kind_of(reason)))
        tally.add(unit, reason, units=int(new_unit), records=1)
        counted += 1
    return counted


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def describe(failure: Failure, width: int = 160) -> list[str]:
    """One line each: the first error, then the most common ones with their counts."""
    first = f"unit {failure.first_unit}" if failure.first_unit else "no unit kept its error"
    lines = [f"first error ({first}): {_cut(failure.first_error, width)}"]
    if failure.errors:
        lines.append("most common errors:")
    for count in failure.errors:
        units = f"{count.units} unit{'s' * (count.units != 1)}"
        records = f"{count.records} record{'s' * (count.records != 1)}"
        alike = f" ({count.variants} texts, other ids or values)" if count.variants > 1 else ""
        lines.append(f"  {units}, {records}{alike}: {_cut(count.error, width)}")
    if failure.dead_letters_counted < failure.dead_letters_total:
        counted, total = failure.dead_letters_counted, failure.dead_letters_total
        lines.append(f"(counted over {counted} of the {total} records refused in delivered units)")
    return lines


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line, whatever the vendor sent
    return text if len(text) <= width else text[: width - 26] + "... (in full: --json)"
