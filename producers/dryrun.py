"""A dry run of a publish: validate and plan the whole input, report its errors, stage nothing.

It touches no Redis at all (not even a job key), so it can check a file on a machine that
has no broker. Errors of single records are all collected, up to a budget
(IMPORTQ_DRY_RUN_MAX_ERRORS); an error that leaves nothing sensible to read after it (a
quote never closed, broken JSON array syntax) or a refusal of the planner (a duplicate
Data Source key, a record over the byte budget) ends the run where it was found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from importq.errors import InputError
from importq.settings import Settings
from producers.problems import EnoughProblems, Problems
from producers.publish import preflight
from producers.validate import validate
from workers import targets
from workers.targets.base import Located, refuse_unknown_params

MAX_ERRORS_SETTING = "IMPORTQ_DRY_RUN_MAX_ERRORS"
DEFAULT_MAX_ERRORS = 20


def error_budget(settings: Settings) -> Problems:
    """An empty collection of errors that stops the run at IMPORTQ_DRY_RUN_MAX_ERRORS."""
    return Problems(settings.integer(MAX_ERRORS_SETTING, DEFAULT_MAX_ERRORS, minimum=1))


@dataclass
class DryRun:
    """What a publish would have done: records and units, or why it would be refused."""

    target: str
    records: int = 0
    units: int = 0
    errors: list[InputError] = field(default_factory=list)
    stopped_early: bool = False
    """True when the budget filled up: the input may hold more errors than reported."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "dry_run": True,
            "staged": False,
            "records": self.records,
            "units": self.units,
            "errors": [str(error) for error in self.errors],
            "stopped_early": self.stopped_early,
        }


def dry_run(
    target: str,
    records: Iterable[Located] | None,
    params: dict[str, Any],
    *,
    settings: Settings,
    problems: Problems,
    check_target: bool = False,
    notify: Callable[[str], None] = lambda message: None,
) -> DryRun:
    """Validate and plan `records` (read with the same `problems`) as `publish` would."""
    declared = targets.get(target)
    sink = declared.sink
    report = DryRun(target, errors=problems.errors)
    try:
        refuse_unknown_params(declared, params, settings)
        params = sink.check_params(dict(params), settings)
        sink.check_job(params, settings, has_records=records is not None)
        if check_target:
            preflight(declared, settings, params, notify)
        if records is None:
            if not declared.records_optional:
                raise InputError(f"{target} needs records: give a file or an iterable")
            report.units = 1
            return report
        checked = validate(target, records, problems=problems)
        for unit in sink.plan(checked, declared.limits(settings), params):
            report.units += 1
            report.records += len(unit)
    except EnoughProblems:
        report.stopped_early = True
    except InputError as error:  # the first error of its kind: nothing after it is read
        report.errors.append(error)
    return report
