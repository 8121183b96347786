"""What an operator does to a target or a unit: resume it, purge its queue, run a unit now.

Each goes through the paths the workers use: a pause is the circuit breaker's
(workers/breaker.py), a woken unit is made due and sent as the reaper sends it,
and a purged unit ends through the runner's cancel path, so nothing is
dead-lettered and the job-finished hooks (order keys, pipelines) run as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from importq.errors import ImportqError, InputError
from workers import keys
from workers.breaker import Breaker
from workers.jobs import TERMINAL_UNIT_STATES, JobStore, JobView, UnitState, as_text
from workers.middleware.base import Waker

# KEYS: a target's Celery list.  ARGV: job ids.  Returns how many messages it dropped.
# Drops the messages of those jobs (their headers' argsrepr is "job=<id> unit=<id>",
# set by publish_unit) and keeps every other message in its place, in one atomic step.
_DROP_MESSAGES = """
local doomed = {}
for _, job in ipairs(ARGV) do doomed[job] = true end
local kept, dropped = {}, 0
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, message = pcall(cjson.decode, raw)
  local job = nil
  if ok and type(message) == 'table' and type(message.headers) == 'table'
     and type(message.headers.argsrepr) == 'string' then
    job = string.match(message.headers.argsrepr, '^job=(%S+)')
  end
  if job and doomed[job] then dropped = dropped + 1 else table.insert(kept, raw) end
end
if dropped > 0 then
  redis.call('DEL', KEYS[1])
  for i = 1, #kept, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(kept, i, math.min(i + 999, #kept)))
  end
end
return dropped
"""


class UnitNotWaiting(InputError):
    """`importq retry` was given a unit that is not waiting for a later attempt."""


@dataclass
class Purge:
    """What purging a target drops (planned) or dropped (done)."""

    target: str
    jobs: list[JobView]
    units: int = 0  # units not ended, running ones excluded
    records: int = 0  # records in those units
    running: int = 0  # units at work now: they finish, their jobs are cancelled
    messages: int = 0  # messages dropped from the Celery list
    left_to_workers: list[str] = field(default_factory=list)  # they settle with the vendor

    def describe(self) -> str:
        jobs = f"{len(self.jobs)} job{'' if len(self.jobs) == 1 else 's'}"
        text = (f"{jobs} of {self.target} ({self.units} units, "
                f"{self.records} records not yet delivered)")  # fmt: skip
        if self.running:
            text += f"; {self.running} units at work now finish first"
        return text


def plan_purge(store: JobStore, target: str) -> Purge:
    """The target's listed jobs that have not ended (staging ones are not queued yet)."""
    listed = [as_text(j) for j in store.redis.zrange(keys.JOBS, 0, -1)]
    jobs = [j for j in store.many(listed) if j.target == target and not j.finished]
    plan = Purge(target, jobs)
    for job in jobs:
        for unit_id, unit in store.units(job.id):
            if unit.get("state") in TERMINAL_UNIT_STATES:
                continue
            if store.redis.exists(keys.lease(unit_id)):
                plan.running += 1
            else:
                plan.units += 1
                plan.records += int(unit.get("records") or 0)
    return plan


def purge(store: JobStore, runner: Any, plan: Purge, reason: str) -> Purge:
    """Cancel the planned jobs, drop their messages and end their units as cancelled.

    A unit that opened something at the vendor (its remote.* ids) is woken for a
    worker instead, which settles it before it ends (the sink's abandon), with the
    target's credentials this command may not have.
    """
    for job in plan.jobs:
        store.cancel(job.id, reason)
    drop = store.redis.register_script(_DROP_MESSAGES)
    queue = keys.celery_queue(plan.target)
    plan.messages = int(drop(keys=[queue], args=[j.id for j in plan.jobs])) if plan.jobs else 0
    waker = Waker(runner.leases, runner.publish)
    plan.units = plan.records = 0
    for job in plan.jobs:
        for unit_id, unit in store.units(job.id):
            if unit.get("state") in TERMINAL_UNIT_STATES:
                continue
            if any(k.startswith("remote.") and v for k, v in unit.items()):
                if not store.redis.exists(keys.lease(unit_id)):
                    wake(waker, unit_id, unit)
                    plan.left_to_workers.append(unit_id)
                continue
            if unit.get("state") == UnitState.WAITING:  # due now, so the claim takes it
                runner.leases.wake(unit_id, unit.get("waits_for", ""))
            if runner.run(plan.target, unit_id) == UnitState.CANCELLED:
                plan.units += 1
                plan.records += int(unit.get("records") or 0)
    return plan


def wake(waker: Waker, unit_id: str, unit: dict[str, str]) -> bool:
    """Send a unit to its queue now (a waiting one made due first); False if it changed."""
    if unit.get("state") == UnitState.WAITING:
        return waker(unit_id, unit["target"], unit.get("waits_for", ""))
    waker.publish(unit_id, unit["target"], None)
    return True


def run_now(store: JobStore, waker: Waker, breaker: Breaker, unit_id: str) -> str:
    """Send a waiting (or never taken) unit to its queue now; says what it waited for."""
    unit = store.unit(unit_id)
    state = unit.get("state")
    if not state:
        raise InputError(f"no unit {unit_id} (see `importq status JOB --units`)")
    if state in TERMINAL_UNIT_STATES:
        raise UnitNotWaiting(f"unit {unit_id} already ended {state}: nothing to run (its "
                             "dead letters go again with `importq dlq replay JOB`)")  # fmt: skip
    if state == UnitState.RUNNING and store.redis.exists(keys.lease(unit_id)):
        raise UnitNotWaiting(f"unit {unit_id} is running now")
    pause = breaker.pause(unit["target"])
    if pause is not None:
        raise UnitNotWaiting(f"{pause.describe()}: unit {unit_id} would only wait again; "
                             f"`importq resume {unit['target']}` first")  # fmt: skip
    waited_for = unit.get("waits_for") or ("a retry" if state == UnitState.WAITING else "a worker")
    if not wake(waker, unit_id, unit):
        raise ImportqError(f"unit {unit_id} changed while it was being woken: look again")
    return f"unit {unit_id} sent to the {unit['target']} queue now (it waited for {waited_for})"


def resume(breaker: Breaker, waker: Waker, target: str) -> int | None:
    """Lift the target's pause (an operator's or the breaker's) and wake the units that
    waited: how many were woken, or None when the target was not paused."""
    was_paused = breaker.pause(target) is not None
    waiting = breaker.resume(target, by_operator=True) or []
    woken = sum(waker(unit_id, target, "breaker") for unit_id in waiting)
    return woken if was_paused else None
