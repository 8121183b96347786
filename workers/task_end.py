"""What a unit's finish recorded that its Celery task's state tells (workers/task_states.py).

The router notes it as it records the finish (workers/routing.py); the task's end reads it,
so choosing FAILURE or RETRY and their words costs no second read of the unit. Its own
module so that the router and the task states need not import each other.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskEnd:
    """What the unit's finish recorded that its task's state tells (workers/routing.py)."""

    records: int
    attempts: int
    waits_for: str = ""
    due: float = 0.0
    """When it runs again (epoch seconds), if it waits."""


# The finish of the unit this task runs; set by the router, read by end_of_task.
ended: ContextVar[TaskEnd | None] = ContextVar("importq_task_end", default=None)


def note_end(end: TaskEnd) -> None:
    """The router recorded the unit's finish: `end` is what its task's state needs."""
    ended.set(end)
