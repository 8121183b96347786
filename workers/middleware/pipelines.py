"""Pipelines: a finished job releases the next step of its pipeline, or stops the rest
(the rule itself, and the reaper's sweep for hooks a dying worker never ran:
workers/pipelines.py)."""

from __future__ import annotations

import structlog

from workers import pipelines
from workers.jobs import JobStore, JobView, as_text
from workers.middleware.base import Middleware, Publish

log = structlog.get_logger("importq.pipelines")


class Pipelines(Middleware):
    def __init__(self, store: JobStore, publish_unit: Publish, rescue_seconds: float) -> None:
        self.store, self.publish_unit, self.rescue_seconds = store, publish_unit, rescue_seconds

    def after_job_finished(self, job: JobView) -> None:
        pipeline_id = self.store.redis.get(pipelines.pipeline_of(job.id))
        if pipeline_id is None:
            return
        try:
            pipelines.advance(self.store, as_text(pipeline_id), self.publish_unit,
                              self.rescue_seconds)  # fmt: skip
        except Exception as error:  # the periodic sweep tries again
            log.warning("pipeline not advanced", pipeline=as_text(pipeline_id), error=str(error))
