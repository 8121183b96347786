"""Why a job failed: its first unit error and its most common errors, with counts.

A failed unit keeps its reason as `last_error` and sends its records to the dead-letter
store with it; a unit that was delivered but had records refused (an http_batch row, a
Blue row skipped) leaves those reasons only in the dead letters. Both are counted here,
so `importq status` and `importq jobs` can say why any failed or partial job failed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import redis

from workers import keys
from workers.jobs import JobState, JobStore, JobView, UnitState

TOP = 3  # most common errors shown
# Dead letters read to count the reasons of records refused inside delivered units:
# enough for the picture, bounded so `importq jobs` stays quick on a huge job.
SCAN_DEAD_LETTERS = 10_000


@dataclass
class ErrorCount:
    error: str
    units: int = 0  # units that ended with this error
    records: int = 0  # records dead-lettered with it


@dataclass(frozen=True)
class Failure:
    first_unit: str
    first_error: str
    errors: list[ErrorCount]  # the most common first
    dead_letters_counted: int = 0  # of the records refused inside delivered units
    dead_letters_total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def why_failed(client: redis.Redis, job: JobView, top: int = TOP) -> Failure | None:
    """The reasons of a failed or partial job, None for any other state."""
    if job.state not in (JobState.FAILED, JobState.PARTIAL):
        return None
    errors: dict[str, ErrorCount] = {}
    first_unit, first_error, failed_units, failed_records = "", "", set(), 0
    for unit_id, state, error, records in _units(client, job.id):
        if state != UnitState.FAILED:
            continue
        failed_units.add(unit_id)
        failed_records += records
        reason = error or "(no reason recorded)"
        count = errors.setdefault(reason, ErrorCount(reason))
        count.units += 1
        count.records += records
        if not first_unit:
            first_unit, first_error = unit_id, reason
    counted = 0
    rest = job.records_dead - failed_records  # refused inside delivered units
    if rest > 0:
        counted, first = _count_dead_letters(client, job.id, failed_units, errors)
        if not first_unit and first:
            first_unit, first_error = first
    ranked = sorted(errors.values(), key=lambda c: (c.records, c.units), reverse=True)
    return Failure(first_unit, first_error, ranked[:top], counted, max(rest, 0))


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
    client: redis.Redis, job_id: str, failed_units: set[str], errors: dict[str, ErrorCount]
) -> tuple[int, tuple[str, str] | None]:
    """Count the reasons of dead letters that delivered units wrote (failed ones are counted)."""
    raw = client.lrange(keys.dead_letters(job_id), 0, SCAN_DEAD_LETTERS - 1)
    units: Counter[tuple[str, str]] = Counter()
    first: tuple[str, str] | None = None
    counted = 0
    for entry in map(json.loads, raw):
        unit = str(entry.get("unit", ""))
        if unit in failed_units or entry.get("record") is None:
            continue
        reason = str(entry.get("reason") or "(no reason recorded)")
        counted += 1
        first = first or (unit, reason)
        count = errors.setdefault(reason, ErrorCount(reason))
        count.records += 1
        if not units[(unit, reason)]:
            count.units += 1
        units[(unit, reason)] += 1
    return counted, first


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
        lines.append(f"  {units}, {records}: {_cut(count.error, width)}")
    if failure.dead_letters_counted < failure.dead_letters_total:
        counted, total = failure.dead_letters_counted, failure.dead_letters_total
        lines.append(f"(counted over {counted} of the {total} records refused in delivered units)")
    return lines


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line, whatever the vendor sent
    return text if len(text) <= width else text[: width - 26] + "... (in full: --json)"
