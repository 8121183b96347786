"""A unit's end as its Celery task's state, so Flower's filters and graphs tell the truth.

The runner says how a unit's run ended ("succeeded", "failed", "waiting"...). Here that
becomes the task's state in Flower:

    failed, or delivered with records dead-lettered  ->  FAILURE  (UnitFailed, in `throws`:
                                                         one log line, no traceback)
    waiting (a retry, or a wait for a slot, a turn,  ->  RETRY    (Celery's Retry, raised
    the vendor, a paused target; or handed back at                without sending a message:
    worker shutdown, using no attempt)                            the runner has rescheduled)
    anything else (succeeded, split, cancelled, a    ->  SUCCESS  (the status is the result)
    duplicate message acknowledged)

Either way the message is acknowledged: the unit's state in Redis is the truth, and
what comes next (the retry, the dead letters) is already recorded there. What the task's
state says (the unit's records, its attempts, what it waits for and until when) comes
from the finish the router just recorded (TaskEnd), not from another read. The task's
exception names the unit and where to read why, never the vendor's words: they may
quote a record, and Flower shows task exceptions to everyone it lets in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar

from celery.exceptions import Retry

from workers import keys
from workers.jobs import UnitState
from workers.middleware.base import Middleware
from workers.outcomes import Outcome, Result, UnitRun
from workers.routing import FREE_HANDBACKS, handback_count
from workers.signals import HandBack, LeaseUnconfirmed
from workers.targets.base import Delivered
from workers.task_end import TaskEnd, ended

# Records the sink refused in the unit this task runs; set by RefusedRecords, read by
# end_of_task. Per thread of execution, so it holds under any Celery pool.
_refused: ContextVar[int] = ContextVar("importq_refused_records", default=0)
# Why the unit went back to the queue unfinished, if it did; set by HandBacks.
_handed_back: ContextVar[str] = ContextVar("importq_handed_back", default="")


class UnitFailed(Exception):
    """The unit failed or dead-lettered records: its task ends in FAILURE."""


class UnitWaits(Exception):
    """The unit will run again (a retry or a wait): its task ends in RETRY."""


class RefusedRecords(Middleware):
    """Notes how many records a delivered unit had refused (they go to the dead letters)."""

    def on_result(self, run: UnitRun, result: Result) -> Outcome | None:
        if isinstance(result, Delivered):
            _refused.set(len(result.rejected))
        return None


class HandBacks(Middleware):
    """Notes why a unit went back to the queue unfinished (its worker shutting down, a lease
    it could not confirm), so its RETRY says that and not "will be retried after attempt N":
    a hand-back uses no attempt, unless the unit has had its free ones (routing.py)."""

    def on_result(self, run: UnitRun, result: Result) -> Outcome | None:
        if isinstance(result, HandBack | LeaseUnconfirmed):
            _handed_back.set(_handback_words(run, result))
        return None


def _handback_words(run: UnitRun, stop: HandBack | LeaseUnconfirmed) -> str:
    handbacks, free = handback_count(run.unit)
    why = " at worker shutdown" if isinstance(stop, HandBack) else (
        ": its lease could not be confirmed in time")  # fmt: skip
    if free:
        return f"unit {run.unit_id} handed back{why}; no attempt used"
    return (f"unit {run.unit_id} handed back{why} (hand-back {handbacks}, past the "
            f"{FREE_HANDBACKS} free ones); it used attempt {run.claim.attempts}")  # fmt: skip


def end_of_task(run_unit: Callable[[], str], unit_id: str) -> str:
    """Run the unit; its status if it ended well, else raise UnitFailed or Retry."""
    tokens = _refused.set(0), ended.set(None), _handed_back.set("")
    try:
        status = run_unit()
        refused, end, handed_back = _refused.get(), ended.get(), _handed_back.get()
    finally:
        _refused.reset(tokens[0])
        ended.reset(tokens[1])
        _handed_back.reset(tokens[2])
    job_id = keys.job_of(unit_id)
    if status == UnitState.FAILED:
        raise UnitFailed(f"unit {unit_id} failed, {_dead(end)}; why: importq status {job_id}")
    if status == UnitState.SUCCEEDED and refused:
        raise UnitFailed(f"unit {unit_id} delivered, but {refused} records were refused and "
                         f"dead-lettered; why: importq dlq show {job_id}")  # fmt: skip
    if status == UnitState.WAITING:
        raise _retry(unit_id, end, handed_back)
    return status


def _dead(end: TaskEnd | None) -> str:
    if end is None:  # the router always notes a finish; said plainly should it not
        return "its records dead-lettered"
    return f"{end.records} records dead-lettered" if end.records else "no records (a bare trigger)"


def _retry(unit_id: str, end: TaskEnd | None, handed_back: str) -> Retry:
    if handed_back:
        why = handed_back
    elif end and end.waits_for:
        what = "paused target to resume" if end.waits_for == "breaker" else end.waits_for
        why = f"unit {unit_id} waits for its {what}, using no attempt"
    else:
        why = f"unit {unit_id} will be retried after attempt {end.attempts if end else '?'}"
    when = round(max(0.0, end.due - time.time()), 2) if end else 0.0
    return Retry(exc=UnitWaits(f"{why}; see importq status {keys.job_of(unit_id)} --units"),
                 when=when)  # fmt: skip
