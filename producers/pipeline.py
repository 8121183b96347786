"""Publishing a pipeline: every step validated and staged up front, held, then the first sent.

Bad input in step three refuses the whole pipeline before step one runs. The
core (workers/pipelines.py) lists the held jobs as a pipeline and advances it
as each step finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from importq.settings import Settings
from producers.publish import publish
from workers import keys, pipelines
from workers.dispatch import Publish
from workers.jobs import JobStore
from workers.targets.base import Located


@dataclass
class Step:
    """One job of a pipeline: a target, its records (None for record-less jobs), its options."""

    target: str
    records: Iterable[Located] | None
    params: dict[str, Any]


def publish_pipeline(
    steps: Sequence[Step],
    *,
    settings: Settings,
    store: JobStore,
    publish_unit: Publish,
    allow_partial: bool = False,
    check_target: bool = False,
    notify: Callable[[str], None] = lambda message: None,
) -> str:
    """Validate and stage every step, then start the first; returns the pipeline id."""
    job_ids: list[str] = []
    try:
        for step in steps:
            job_id = publish(step.target, step.records, step.params, settings=settings,
                             store=store, publish_unit=publish_unit, hold=True,
                             check_target=check_target, notify=notify)  # fmt: skip
            job_ids.append(job_id)
    except BaseException:
        for job_id in job_ids:  # nothing of a refused pipeline stays behind
            store.discard(job_id)
            store.redis.zrem(keys.JOBS, job_id)
        raise
    pipeline_id = pipelines.open_pipeline(store, job_ids, allow_partial)
    pipelines.advance(store, pipeline_id, publish_unit, settings.rescue_seconds)
    return pipeline_id
