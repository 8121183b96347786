"""The hooks a cross-cutting rule plugs into around one unit; dramatiq's middleware is the model.

For each claimed unit the runner calls, on every middleware in its list:

    before_unit(run)          in order; an outcome (Defer, Paused...) ends the run there:
                              the sink and the later middleware's before_unit are skipped
    request_check(run)        a check run before every vendor request made for the unit
    on_result(run, result)    in reverse order, on the middleware whose before_unit let the
                              unit through: what it came to, before it is routed; an outcome
                              returned replaces it (the breaker pauses instead of retrying)
    after_unit(run, status)   in reverse order on the same middleware, after routing, always
                              (also when routing or a later before_unit raised): slots go here
    after_job_finished(job)   in order, once, when a job's last unit has finished

Middleware keep nothing per unit on themselves (a Runner is shared by a process);
what one needs from before to after rides on the UnitRun.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from workers.jobs import JobView
from workers.leases import Leases
from workers.outcomes import Outcome, Result, UnitRun

Publish = Callable[[str, str, float | None], None]  # unit id, target, countdown
Check = Callable[[], Any]
# The runner's logger: a rule's lines belong to the unit's run, as they did inside it.
log = structlog.get_logger("importq.runner")


class Middleware:
    """A rule around a unit's run; each hook does nothing unless overridden."""

    def before_unit(self, run: UnitRun) -> Outcome | None:
        return None

    def request_check(self, run: UnitRun) -> Check | None:
        return None

    def on_result(self, run: UnitRun, result: Result) -> Outcome | None:
        return None

    def after_unit(self, run: UnitRun, status: str | None) -> None:
        """`status`: the routed outcome ("succeeded", "waiting"...), None if routing raised."""

    def after_job_finished(self, job: JobView) -> None:
        return None


class Waker:
    """Sends a waiting unit's message once what it waits for is free: one home for waking."""

    def __init__(self, leases: Leases, publish: Publish) -> None:
        self.leases, self.publish = leases, publish

    def __call__(
        self, unit_id: str, target: str, waits_for: str, countdown: float | None = None
    ) -> bool:
        # Only a unit still waiting for this is made due; the message's claim decides the rest.
        if not self.leases.wake(unit_id, waits_for):
            return False
        self.publish(unit_id, target, countdown)
        return True
