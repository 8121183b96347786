"""Publish order per key: a job runs only once the jobs before it on its key finished.

Used where a target needs order across jobs (a Datasource replace must land
before the increments published after it). The order list holds job ids;
finished jobs leave it when they finish, or lazily when a later job looks.
"""

from __future__ import annotations

import redis

from workers import keys
from workers.jobs import JobStore, JobView, as_text


def enqueue(client: redis.Redis, target: str, key: str | None, job_id: str) -> None:
    """Record the job's place in line (at publish, before its units are sent)."""
    if key:
        client.rpush(keys.order(target, key), job_id)


def my_turn(store: JobStore, target: str, key: str | None, unit_id: str) -> bool:
    """True when no unfinished job was published before this unit's job on its key."""
    if not key:
        return True
    order_key = keys.order(target, key)
    job_id = keys.job_of(unit_id)
    while True:
        head = store.redis.lindex(order_key, 0)
        if head is None:
            return True  # not in line (published before ordering existed): let it run
        head_id = as_text(head)
        if head_id == job_id:
            return True
        head_job = store.get(head_id)
        if head_job is not None and not head_job.finished:
            return False
        store.redis.lrem(order_key, 1, head_id)  # a finished or vanished job leaves the line


def release(client: redis.Redis, job: JobView) -> str | None:
    """A finished job leaves its line; returns the job now at its head, to be woken."""
    from workers import targets

    key = targets.get(job.target).order_key(job.params)
    if not key:
        return None
    pipe = client.pipeline(transaction=True)
    pipe.lrem(keys.order(job.target, key), 1, job.id)
    pipe.lindex(keys.order(job.target, key), 0)
    _, head = pipe.execute()
    return as_text(head) if head is not None else None
