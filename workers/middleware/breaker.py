"""The circuit breaker around a unit (the breaker itself: workers/breaker.py).

A paused target's units wait before they run, but one probe; a failure that says
the target is unusable is counted and may pause it (the unit then waits instead
of using an attempt); any answer from the vendor to the probe resumes the target
and wakes the units that waited.
"""

from __future__ import annotations

import time

from importq.errors import FinalError, RetryableError
from workers.breaker import Breaker, target_wide
from workers.middleware.base import Middleware, Waker, log
from workers.outcomes import Misconfigured, Paused, Result, UnitRun
from workers.targets.base import Delivered


def vendor_answered(result: Result) -> bool:
    """True when the result is the vendor's own answer (a 429 too), not an outage."""
    if isinstance(result, Delivered | FinalError):
        return True
    return isinstance(result, RetryableError) and bool(result.status) and not target_wide(result)


class CircuitBreaker(Middleware):
    def __init__(self, breaker: Breaker, wake: Waker) -> None:
        self.breaker, self.wake = breaker, wake

    def before_unit(self, run: UnitRun) -> Paused | None:
        if run.claim.target_paused is False:  # the claim saw no pause: nothing to ask
            return None
        verdict, probe_at = self.breaker.admit(run.target, run.claim.token)
        if verdict == "wait":
            return self._paused(run, probe_at)
        run.probing = verdict == "probe"
        return None

    def on_result(self, run: UnitRun, result: Result) -> Paused | None:
        error = result.error if isinstance(result, Misconfigured) else result
        if isinstance(error, Exception) and target_wide(error):
            # Not the unit's fault: counted for the target, which may be paused now.
            probe_at = self.breaker.failed(run.target, run.unit_id, run.claim.token, error)
            if probe_at is not None:
                return self._paused(run, probe_at)
        if vendor_answered(result):
            self._answered(run)
        return None

    def _paused(self, run: UnitRun, probe_at: float) -> Paused:
        """Park the unit until the target resumes; it waits using no attempt."""
        pause = self.breaker.pause(run.target)
        why = pause.describe() if pause else f"target {run.target} paused"
        log.warning("unit waits: its target is paused", reason=why,
                    next_probe_in=round(max(0.0, probe_at - time.time()), 1))  # fmt: skip
        delay = max(0.0, self.breaker.wait(run.target, run.unit_id, probe_at) - time.time())
        return Paused(delay, why)

    def _answered(self, run: UnitRun) -> None:
        """The vendor answered this unit: a probe that gets this far resumes its target."""
        if not run.probing:
            return
        waiting = self.breaker.resume(run.target)
        if waiting is None:  # an operator paused it meanwhile: only `importq resume` lifts it
            return
        log.warning("target resumed: the probe reached the vendor", waking=len(waiting))
        for unit_id in waiting:
            if unit_id != run.unit_id:
                self.wake(unit_id, run.target, "breaker")
