"""Order per key: a unit waits for its turn (or a hold) before it runs; a finished job
leaves its line and wakes the next job's units (the rule itself: workers/ordering.py)."""

from __future__ import annotations

from workers import ordering
from workers.jobs import JobStore, JobView
from workers.middleware.base import Middleware, Waker, log
from workers.outcomes import Defer, UnitRun


class Ordering(Middleware):
    def __init__(self, store: JobStore, wake: Waker) -> None:
        self.store, self.wake = store, wake

    def before_unit(self, run: UnitRun) -> Defer | None:
        why = ordering.blocked(self.store, run.target, run.sink.order_key(run.params), run.unit_id)
        if why == "turn":
            log.info("an earlier job on the same order key is not finished; waiting")
            return Defer("turn")
        if why:  # held by a failed job until an operator acts: no ceiling on this wait
            log.warning("unit waits: its order key is held", reason=why)
            return Defer("turn", why=why, bounded=False)
        return None

    def after_job_finished(self, job: JobView) -> None:
        if ordering.hold_if_unfit(self.store, job):
            log.error("later jobs on its order key are held until it is replayed or released")
        self.wake_turn(job.target, ordering.release(self.store.redis, job))

    def wake_turn(self, target: str, job_id: str | None) -> int:
        """Wake the units of `job_id` that wait for their turn on its order key."""
        unit_ids = self.store.unit_ids(job_id) if job_id else []
        return sum(self.wake(unit_id, target, "turn") for unit_id in unit_ids)
