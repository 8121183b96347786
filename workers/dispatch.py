"""Sending a staged job's units to its target's queue: the one step producers and workers share.

A producer releases a job it staged at once (or later, for a held pipeline
step); the pipeline hook and sweep in the workers release the next step. Both
sides call `release` here, so workers/ never reaches into producers/.
"""

from __future__ import annotations

from collections.abc import Callable

from importq.errors import InputError
from workers.jobs import JobStore

# Sends the small message that wakes a worker for one unit: unit id, target, countdown.
Publish = Callable[[str, str, float | None], None]


def release(store: JobStore, job_id: str, publish_unit: Publish, rescue_seconds: float) -> None:
    """Send a staged job's units to its target's queue.

    From now on the reaper watches them: a message lost on the way (a publish that
    failed halfway, a worker killed between BRPOP and kombu's bookkeeping) is sent
    again once `rescue_seconds` (IMPORTQ_RESCUE_SECONDS) passed unclaimed.
    """
    job = store.get(job_id)
    if job is None:
        raise InputError(f"no job {job_id}")
    unit_ids = store.unit_ids(job_id)
    store.watch(unit_ids, rescue_seconds)
    send(unit_ids, job.target, publish_unit)


def send(unit_ids: list[str], target: str, publish_unit: Publish) -> None:
    """Send the message of each unit, watched already (see `release`)."""
    for unit_id in unit_ids:
        publish_unit(unit_id, target, None)
