"""Publish order per key: a job runs only once the jobs before it on its key finished.

Used where a target needs order across jobs (a Datasource replace must land
before the increments published after it). The order list holds job ids;
finished jobs leave it when they finish, or lazily when a later job looks.

A job whose failure leaves the key's data unfit for what follows (a replace
that truncated a data source and did not refill it) puts a *hold* on the key:
later jobs wait, saying why, until an operator replays that job (its replay
goes first in line and lifts the hold) or releases them (`importq release`).
"""

from __future__ import annotations

import json

import redis

from workers import keys
from workers.jobs import JobState, JobStore, JobView, as_text


def enqueue(
    client: redis.Redis, target: str, key: str | None, job_id: str, first: bool = False
) -> None:
    """Record the job's place in line (at publish, before its units are sent).

    `first`: the replay of the job that holds the key: it goes ahead of the jobs
    held behind it, and the hold is lifted.
    """
    if not key:
        return
    if first:
        pipe = client.pipeline(transaction=True)
        held_by = holder(client, target, key)
        if held_by:  # the failed job leaves the line for good: its replay takes its place
            pipe.lrem(keys.order(target, key), 0, held_by)
        pipe.lpush(keys.order(target, key), job_id)
        pipe.delete(keys.order_hold(target, key))
        pipe.execute()
    else:
        client.rpush(keys.order(target, key), job_id)


def blocked(store: JobStore, target: str, key: str | None, unit_id: str) -> str | None:
    """None when this unit's job may run; else why not ("turn", or the hold's reason)."""
    if not key:
        return None
    hold = held(store.redis, target, key)
    if hold:  # the held job has left the line; its replay lifts the hold when it enters
        return hold
    order_key = keys.order(target, key)
    job_id = keys.job_of(unit_id)
    while True:
        head = store.redis.lindex(order_key, 0)
        if head is None:
            return None  # not in line (published before ordering existed): let it run
        head_id = as_text(head)
        if head_id == job_id:
            return None
        head_job = store.get(head_id)
        if head_job is not None and not head_job.finished:
            return "turn"
        # Finished: it holds the line if its failure left the key unfit (decided here too,
        # as its worker may not have got that far), else it leaves the line.
        if head_job is not None and (hold := hold_if_unfit(store, head_job)):
            return hold
        store.redis.lrem(order_key, 1, head_id)


def hold_if_unfit(store: JobStore, job: JobView) -> str | None:
    """Hold the line behind a finished `job` if its target says its failure left the key
    unfit for later jobs (a failed Data Source replace); the hold's reason, or None."""
    from workers import targets

    sink = targets.get(job.target).sink
    key = sink.order_key(job.params)
    if not key or job.state not in (JobState.FAILED, JobState.PARTIAL):
        return None
    if not sink.holds_order_on_failure(job.params):
        return None
    reason = store.first_error(job.id) or f"it ended {job.state}"
    value = json.dumps({"job": job.id, "reason": reason})
    store.redis.set(keys.order_hold(job.target, key), value, nx=True)
    return held(store.redis, job.target, key)


def held(client: redis.Redis, target: str, key: str) -> str | None:
    """The reason later jobs on this key are held, or None."""
    raw = client.get(keys.order_hold(target, key))
    if raw is None:
        return None
    found = json.loads(raw)
    return (
        f"held: job {found['job']} failed and left {target} {key} unfit for later jobs "
        f"({found['reason'][:300]}); replay it (`importq dlq replay {found['job']}`) or "
        f"release the later jobs (`importq release {found['job']}`)"
    )


def holder(client: redis.Redis, target: str, key: str | None) -> str | None:
    """The job whose failure holds this key, or None."""
    raw = client.get(keys.order_hold(target, key)) if key else None
    return str(json.loads(raw)["job"]) if raw is not None else None


def release_hold(client: redis.Redis, target: str, key: str) -> bool:
    """Let the later jobs run after all; True if there was a hold."""
    return bool(client.delete(keys.order_hold(target, key)))


def release(client: redis.Redis, job: JobView) -> str | None:
    """A finished job leaves its line; returns the job now at its head, to be woken."""
    from workers import targets

    key = targets.get(job.target).sink.order_key(job.params)
    if not key:
        return None
    pipe = client.pipeline(transaction=True)
    pipe.lrem(keys.order(job.target, key), 1, job.id)
    pipe.lindex(keys.order(job.target, key), 0)
    _, head = pipe.execute()
    return as_text(head) if head is not None else None
