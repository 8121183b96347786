"""Replaying dead letters: publish a job's refused records again as a new job.

One replay per job at a time (a lock key with a TTL): two operators, or one
pressing twice, replay the records once. The dead letters are dropped only
after the new job is published. The replay of a job that holds its order key
(a failed Data Source replace) goes ahead of the jobs held behind it. A failed job
without records (a Blueshift bare trigger) is replayed as the same trigger, with
its params.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from importq.errors import ImportqError
from importq.settings import Settings
from producers.publish import locate, publish
from workers import keys, ordering, targets
from workers.dispatch import Publish
from workers.dlq import DeadLetters
from workers.jobs import JobStore
from workers.targets.base import Located

LOCK_SECONDS = 3600  # longer than any publish; a crashed replay frees the job after it


@dataclass(frozen=True)
class Replayed:
    job_id: str
    records: int  # dead letters replayed (a failed trigger's is one, without a record)
    new_job_id: str
    trigger: bool = False  # a job without records, sent again with its params


class ReplayError(ImportqError):
    """This job's dead letters cannot be replayed now (none, or a replay is running)."""


def replay(
    job_id: str,
    *,
    settings: Settings,
    store: JobStore,
    publish_unit: Publish,
    overrides: dict[str, Any] | None = None,
    notify: Callable[[str], None] = lambda message: None,
) -> Replayed:
    """Publish `job_id`'s dead letters as a new job (params updated by `overrides`)."""
    letters = DeadLetters(store.redis)
    original = store.get(job_id)
    count = letters.count(job_id)
    if original is None or count == 0:
        raise ReplayError(f"job {job_id} has no dead letters to replay")
    lock = keys.dead_letters(job_id) + ":replaying"
    if not store.redis.set(lock, "1", nx=True, ex=LOCK_SECONDS):
        raise ReplayError(f"job {job_id} is being replayed already; nothing done")
    try:
        params = {**original.params, **(overrides or {})}
        key = targets.get(original.target).sink.order_key(params)
        first = ordering.holder(store.redis, original.target, key) == job_id
        records = _records_to_replay(letters, job_id, original.target)
        new_job = publish(
            original.target, records, params, settings=settings, store=store,
            publish_unit=publish_unit, notify=notify, first_in_line=first,
        )  # fmt: skip
        letters.drop(job_id, count, settings.job_ttl)
    finally:
        store.redis.delete(lock)
    return Replayed(job_id, count, new_job, trigger=records is None)


def _records_to_replay(letters: DeadLetters, job_id: str, target: str) -> Iterable[Located] | None:
    """The job's refused records; None to replay a failed job without records (a trigger)."""
    if next(letters.records(job_id), None) is not None:
        return locate(letters.records(job_id), f"dead letter of {job_id}")
    if targets.get(target).records_optional:
        return None  # a bare trigger, sent again with the same params
    reason = next(letters.entries(job_id, 1))["reason"]
    raise ReplayError(f"job {job_id} failed without records to replay ({reason}): publish "
                      f"its records again with `importq publish {target}`")  # fmt: skip


def replayable(client: redis.Redis, target: str | None = None) -> list[str]:
    """Jobs with dead letters, oldest first; only `target`'s when given."""
    ids = [summary.job_id for summary in DeadLetters(client).jobs(limit=100_000)]
    if target is None:
        return list(reversed(ids))
    store = JobStore(client)
    return [i for i in reversed(ids) if (job := store.get(i)) and job.target == target]
