"""Input errors collected instead of raised, up to a budget: how a dry run reports them all."""

from __future__ import annotations

from importq.errors import InputError


class EnoughProblems(Exception):
    """The budget is full: stop reading, the report is long enough."""


class Problems:
    """Record-level InputErrors (a bad line, a bad field) gathered while the input streams on.

    Readers and validation hand such an error to `add` and skip the record when they are
    given a Problems; without one they raise it, as a real publish does. Errors that leave
    nothing sensible to read after them (a quote never closed, broken JSON array syntax)
    are raised either way.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.errors: list[InputError] = []

    def add(self, error: InputError) -> None:
        self.errors.append(error)
        if len(self.errors) >= self.limit:
            raise EnoughProblems


def refuse(error: InputError, problems: Problems | None) -> None:
    """Raise `error`, or note it when a dry run collects errors (the record is then skipped)."""
    if problems is None:
        raise error
    problems.add(error)
