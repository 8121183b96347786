"""Where a unit's result takes it: the state recorded for it, fenced on its lease.

Outcomes are routed the same way for every target: delivered records are
counted, a retryable failure is rescheduled with backoff (or fails for good
once attempts run out), a record-level refusal is bisected until the bad
record stands alone in the dead-letter store, and any other final error sends
the unit's records there with the vendor's reason. Every write is fenced on
the lease, so a worker presumed dead cannot commit over its successor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import structlog

from importq.errors import FinalError, RejectedError, RetryableError, TargetError, VendorBusy
from importq.settings import Settings
from workers import keys, targets
from workers.jobs import JobStore, JobView, UnitState, encode_records, unit_fields, view
from workers.leases import Finish, Leases, now_ms
from workers.middleware.base import Middleware, Publish
from workers.outcomes import Defer, Misconfigured, Paused, Result, UnitRun
from workers.retry import unit_delay
from workers.signals import HandBack, LeaseLost, LeaseUnconfirmed
from workers.targets.base import Delivered, Record
from workers.task_end import TaskEnd, note_end

# The runner's logger: routing is the end of the unit's run, and its lines say so.
log = structlog.get_logger("importq.runner")

WAIT_BASE = 1.0  # first wait of a unit whose slot or turn is taken; grows to WAIT_MAX
WAIT_MAX = 10.0  # a freed slot or turn wakes its waiter at once, so this only bounds churn
# A unit handed back at shutdown uses no attempt, this many times; after that each
# hand-back counts one, so a worker restarted in a loop cannot keep a unit going forever.
FREE_HANDBACKS = 3
JOB_FINISHED = 2


def handback_count(unit: dict[str, str]) -> tuple[int, bool]:
    """Which hand-back of the unit this one is, and whether it is free (uses no attempt)."""
    handbacks = int(unit.get("handbacks") or 0) + 1
    return handbacks, handbacks <= FREE_HANDBACKS


class Router:
    """Turns a unit's result into its recorded state, and sends the unit again when it waits.

    `middleware` is the runner's own list (shared, so middleware added later hear of
    finished jobs too); `abandon` asks the sink, under the unit's heartbeat, to settle
    what earlier attempts left open: Delivered if the vendor had committed, else a note
    for the reason ("" for none).
    """

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        leases: Leases,
        publish: Publish,
        middleware: list[Middleware],
        abandon: Callable[[UnitRun], Delivered | str],
    ) -> None:
        self.settings = settings
        self.store = store
        self.leases = leases
        self.publish = publish
        self.middleware = middleware
        self.abandon = abandon

    def route(self, run: UnitRun, result: Result) -> str:
        match result:
            case Delivered():
                return self._delivered(run, result)
            case Defer(waits_for, why, bounded, retry_after):
                return self._defer(run, waits_for, retry_after, why, bounded)
            case Paused(delay, why, waits_for):
                return self._reschedule(run, delay, retry=False, attempts_delta=-1, error=why,
                                        fields={"waits_for": waits_for})  # fmt: skip
            case Misconfigured(error):
                return self.fail(run, str(error))
            case HandBack():
                log.info("worker shutting down: the unit goes back to the queue at its checkpoint")
                return self._hand_back(run, exact=True)
            case LeaseUnconfirmed():
                # Stopped before the next vendor request; back to the queue if still ours (the
                # fenced finish decides), with no resume point: a request may have been cut.
                log.warning("stopped without committing", reason=str(result))
                return self._hand_back(run, exact=False, error=str(result))
            case LeaseLost():
                log.warning("stopped without committing", reason=str(result))
                return "lease lost"
            case RetryableError():
                return self._retry(run, result)
            case FinalError():
                return self._refused(run, result)
        raise TypeError(f"no route for {result!r}")

    def early(self, unit_id: str, target: str, due: float) -> str:
        """A message came before the unit's due time: send it again for then, use nothing."""
        delay = max(0.0, due - time.time())
        log.info("message came before the unit is due; rescheduled without an attempt",
                 unit=unit_id, due_in=round(delay, 2))  # fmt: skip
        self._send_when_due(unit_id, target, delay)
        return "early"

    def _send_when_due(self, unit_id: str, target: str, delay: float) -> None:
        # A countdown message waits in a worker's memory and is redelivered after the
        # visibility timeout; a longer wait is left to the reaper, which sends it when due.
        if delay <= self.settings.visibility_timeout / 4:
            self.publish(unit_id, target, delay)

    def cancel(self, run: UnitRun) -> str:
        if isinstance(settled := self.abandon(run), Delivered):
            return self._delivered(run, settled)  # committed before the cancel came
        return self._finish(run, Finish(UnitState.CANCELLED, terminal=True))

    def _hand_back(self, run: UnitRun, *, exact: bool, error: str = "") -> str:
        """Back to the queue now; `exact`: stopped at a checkpoint the next run may trust."""
        handbacks, free = handback_count(run.unit)
        if not free and run.claim.attempts >= self.settings.max_attempts:
            return self.fail(run, f"handed back {handbacks} times (workers shutting down or "
                                  f"cut off from Redis), and {run.claim.attempts} attempts "
                                  "are used up")  # fmt: skip
        fields = {"handed_back": "1" if exact else "", "handbacks": str(handbacks)}
        return self._reschedule(run, 0.0, retry=False, attempts_delta=-1 if free else 0,
                                error=error, fields=fields)  # fmt: skip

    def _defer(self, run: UnitRun, waits_for: str, retry_after: float | None = None,
               why: str = "", bounded: bool = True) -> str:  # fmt: skip
        """Wait without using an attempt (a slot, a turn, the vendor), bounded in total."""
        since = float(run.unit.get("waiting_since") or time.time())
        waited = time.time() - since
        ceiling = self.settings.max_wait(run.target)
        if bounded and waited > ceiling:
            what = why or f"its {waits_for}"
            limit = f"{ceiling:.0f} s allowed (IMPORTQ_MAX_WAIT_SECONDS)"
            return self.fail(run, f"waited {waited:.0f} s for {what}, over the {limit}")
        waits = int(run.unit.get("deferrals") or 0) + 1
        delay = unit_delay(waits, WAIT_BASE, WAIT_MAX, retry_after)
        fields = {"deferrals": str(waits), "waits_for": waits_for, "waiting_since": str(since)}
        return self._reschedule(run, delay, retry=False, attempts_delta=-1, error=why,
                                fields=fields)  # fmt: skip

    def _delivered(self, run: UnitRun, delivered: Delivered) -> str:
        dead = [self._dead_letter(run, record, reason) for record, reason in delivered.rejected]
        state = UnitState.SUCCEEDED
        fields = {"delivered": str(delivered.count), "finished_at": str(time.time())}
        fields.update({f"remote.{name}": value for name, value in delivered.remote.items()})
        if delivered.warnings:
            fields["warnings"] = json.dumps(delivered.warnings[:100])
        outcome = Finish(
            state,
            terminal=True,
            fields=fields,
            delivered=delivered.count,
            dead=len(dead),
            dead_letters=dead,
        )
        log.info("unit delivered", records=delivered.count, dead_letters=len(dead))
        return self._finish(run, outcome)

    def _retry(self, run: UnitRun, error: RetryableError) -> str:
        if isinstance(error, VendorBusy):  # waiting, not failing: no attempt is used
            log.info("unit waits", reason=str(error), retry_after=error.retry_after)
            return self._defer(run, "vendor", error.retry_after, str(error))
        if run.claim.attempts >= self.settings.max_attempts:
            return self.fail(run, f"gave up after {run.claim.attempts} attempts: {error}")
        delay = unit_delay(
            run.claim.attempts,
            self.settings.backoff_base,
            self.settings.backoff_max,
            error.retry_after,
        )
        log.warning("unit will be retried", error=str(error), delay=round(delay, 2))
        return self._reschedule(run, delay, retry=True, error=str(error))

    def _refused(self, run: UnitRun, error: FinalError) -> str:
        if (
            isinstance(error, RejectedError)
            and len(run.records) > 1
            and targets.get(run.target).splittable
        ):
            return self._split(run, error)
        return self.fail(run, str(error), settle=False)  # the sink settled before raising

    def _split(self, run: UnitRun, error: TargetError) -> str:
        half = len(run.records) // 2
        children = []
        for index, part in enumerate((run.records[:half], run.records[half:])):
            child_id = f"{run.unit_id}.{index}"
            fields = unit_fields(keys.job_of(run.unit_id), run.target, len(part), run.unit_id)
            children.append((child_id, fields, encode_records(part)))
        log.info(
            "unit refused as a whole; splitting it to find the bad record",
            error=str(error),
            records=len(run.records),
        )
        outcome = Finish(
            UnitState.SPLIT, terminal=True, fields={"last_error": str(error)}, children=children
        )
        status = self._finish(run, outcome)
        if status == UnitState.SPLIT:
            for child_id, _, _ in children:
                self.publish(child_id, run.target, None)
        return status

    def fail(self, run: UnitRun, reason: str, *, settle: bool = True) -> str:
        """Dead-letter the unit's records, after settling what earlier attempts left open."""
        settled = self.abandon(run) if settle else ""
        if isinstance(settled, Delivered):  # it had committed: not a failure at all
            log.warning("the vendor had committed the unit", reason=reason)
            return self._delivered(run, settled)
        return self._dead_lettered(run, reason + settled)

    def _dead_lettered(self, run: UnitRun, reason: str) -> str:
        dead = [self._dead_letter(run, record, reason) for record in run.records]
        log.error(
            "unit failed; records sent to the dead-letter store", reason=reason, records=len(dead)
        )
        # A unit without records (a bare trigger) leaves one letter without a record, so its
        # job is in `importq dlq list` and can be replayed; it counts no dead record.
        letters = dead or [self._dead_letter(run, None, reason)]
        outcome = Finish(
            UnitState.FAILED,
            terminal=True,
            fields={"last_error": reason},
            dead=len(dead),
            dead_letters=letters,
        )
        return self._finish(run, outcome)

    def _reschedule(
        self,
        run: UnitRun,
        delay: float,
        *,
        retry: bool,
        attempts_delta: int = 0,
        error: str = "",
        fields: dict[str, str] | None = None,
    ) -> str:
        due = now_ms() + int(delay * 1000)
        fields = {"next_attempt_at": str(due / 1000), **(fields or {})}
        if error:
            fields["last_error"] = error
        outcome = Finish(
            UnitState.WAITING,
            terminal=False,
            fields=fields,
            retry=retry,
            attempts_delta=attempts_delta,
            deadline_ms=due + self.leases.grace_ms,
        )
        status = self._finish(run, outcome)
        if status == UnitState.WAITING:
            self._send_when_due(run.unit_id, run.target, delay)
        return status

    def _finish(self, run: UnitRun, outcome: Finish) -> str:
        # Ran (or ended): the next wait starts short and its ceiling counts from then.
        for name in ("deferrals", "waits_for", "waiting_since"):
            outcome.fields.setdefault(name, "")
        recorded = self.leases.record(run.unit_id, run.claim.token, outcome, self.settings.job_ttl)
        if not recorded.status:
            log.warning("lease lost before the outcome was recorded; another worker owns the unit")
            return "lease lost"
        # What the task's state tells, known here: its end needs no read of the unit.
        note_end(TaskEnd(records=int(run.unit.get("records") or 0),
                         attempts=run.claim.attempts + outcome.attempts_delta,
                         waits_for=outcome.fields.get("waits_for", ""),
                         due=float(outcome.fields.get("next_attempt_at") or 0)))  # fmt: skip
        if recorded.status == JOB_FINISHED:
            # The finish read the job as it ended and set its expiry (unless it has dead
            # letters: a failed trigger has one; those stay until replayed).
            self._job_finished(view(keys.job_of(run.unit_id), recorded.job))
        return str(outcome.state)

    def _job_finished(self, job: JobView | None) -> None:
        if job is None:
            return
        log.info("job finished", job_state=str(job.state), delivered=job.records_delivered,
                 dead=job.records_dead)  # fmt: skip
        for middleware in self.middleware:
            middleware.after_job_finished(job)

    def _dead_letter(self, run: UnitRun, record: Record | None, reason: str) -> str:
        entry = {
            "record": record,
            "reason": reason,
            "unit": run.unit_id,
            "target": run.target,
            "attempts": run.claim.attempts,
            "at": time.time(),
        }
        return json.dumps(entry, separators=(",", ":"))
