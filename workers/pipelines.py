"""Ordered pipelines of jobs: each step starts only when the step before it succeeded.

Every step is validated and staged up front and held (listed, not sent), so bad
input in step three refuses the whole pipeline before step one runs. The first
step is released at once. When a step's job finishes, the runner's job-finished
hook releases the next step if it succeeded, or cancels every later step with
the reason if it did not. A worker can die between a step's last unit and that
hook; so the reaper (one sweep per interval across all workers) also sweeps
the open pipelines and applies the same check. Advancing is idempotent: each
step is released once (HSETNX).

    importq:pipelines               zset   pipeline id -> created (ms): the open pipelines
    importq:pipeline:{id}           hash   steps (JSON job ids), allow_partial, created_at,
                                           finished_at, released:{n} (when step n was sent)
    importq:pipeline_of:{job}       string the pipeline a job is a step of
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import structlog

from workers import keys
from workers.dispatch import Publish, release
from workers.jobs import JobState, JobStore, JobView, as_text, new_job_id

OPEN = keys.PREFIX + "pipelines"
FINISHED_KEPT_SECONDS = 14 * 86400  # as long as a finished job by default (IMPORTQ_JOB_TTL)
log = structlog.get_logger("importq.pipelines")


def pipeline_key(pipeline_id: str) -> str:
    return f"{keys.PREFIX}pipeline:{pipeline_id}"


def pipeline_of(job_id: str) -> str:
    return f"{keys.PREFIX}pipeline_of:{job_id}"


@dataclass(frozen=True)
class PipelineView:
    id: str
    jobs: list[JobView]
    finished: bool


def open_pipeline(store: JobStore, job_ids: list[str], allow_partial: bool) -> str:
    """List staged, held jobs as the steps of a new pipeline; returns its id (none started)."""
    pipeline_id = new_job_id()
    pipe = store.redis.pipeline(transaction=True)
    pipe.hset(pipeline_key(pipeline_id), mapping={
        "steps": json.dumps(job_ids), "allow_partial": int(allow_partial),
        "created_at": time.time(),
    })  # fmt: skip
    for job_id in job_ids:
        pipe.set(pipeline_of(job_id), pipeline_id)
    pipe.zadd(OPEN, {pipeline_id: int(time.time() * 1000)})
    pipe.execute()
    return pipeline_id


def advance(
    store: JobStore, pipeline_id: str, publish_unit: Publish, rescue_seconds: float
) -> None:
    """Release the next step if its predecessor succeeded, or stop the rest if it did not."""
    raw = store.redis.hgetall(pipeline_key(pipeline_id))
    meta = {as_text(k): as_text(v) for k, v in raw.items()}
    if not meta or "finished_at" in meta:
        store.redis.zrem(OPEN, pipeline_id)
        return
    steps: list[str] = json.loads(meta["steps"])
    for number, job_id in enumerate(steps):
        if f"released:{number}" not in meta:
            _release(store, pipeline_id, number, job_id, publish_unit, rescue_seconds)
            return
        job = store.get(job_id)
        if job is None or not job.finished:
            return  # still running (or discarded by hand: nothing to advance)
        if job.state == JobState.SUCCEEDED:
            continue
        if job.state == JobState.PARTIAL and meta.get("allow_partial") == "1":
            continue
        _stop_rest(store, pipeline_id, steps, number, job, publish_unit, rescue_seconds)
        break
    pipe = store.redis.pipeline(transaction=True)
    pipe.hset(pipeline_key(pipeline_id), "finished_at", time.time())
    pipe.zrem(OPEN, pipeline_id)
    # A finished pipeline is only looked at, never advanced again: its keys go in time.
    pipe.expire(pipeline_key(pipeline_id), FINISHED_KEPT_SECONDS)
    for job_id in steps:
        pipe.expire(pipeline_of(job_id), FINISHED_KEPT_SECONDS)
    pipe.execute()
    log.info("pipeline finished", pipeline=pipeline_id)


def _release(
    store: JobStore,
    pipeline_id: str,
    number: int,
    job_id: str,
    publish_unit: Publish,
    rescue_seconds: float,
) -> None:
    # Watched first: if this process dies between the flag and the send, the reaper sends.
    store.watch(store.unit_ids(job_id), rescue_seconds)
    if not store.redis.hsetnx(pipeline_key(pipeline_id), f"released:{number}", time.time()):
        return  # another worker's hook or sweep released it a moment ago
    log.info("pipeline step released", pipeline=pipeline_id, step=number + 1, job=job_id)
    release(store, job_id, publish_unit, rescue_seconds)


def _stop_rest(
    store: JobStore,
    pipeline_id: str,
    steps: list[str],
    number: int,
    failed: JobView,
    publish_unit: Publish,
    rescue_seconds: float,
) -> None:
    reason = (
        f"pipeline {pipeline_id}: step {number + 1} ({failed.target} job {failed.id}) ended "
        f"{failed.state.value}{_first_error(store, failed.id)}; later steps were not started"
    )
    log.warning("pipeline stopped", pipeline=pipeline_id, reason=reason)
    for later, job_id in enumerate(steps[number + 1 :], start=number + 1):
        store.cancel(job_id, reason)
        # Sent anyway, so each unit is closed as cancelled and leaves nothing queued.
        _release(store, pipeline_id, later, job_id, publish_unit, rescue_seconds)


def _first_error(store: JobStore, job_id: str) -> str:
    error = store.first_error(job_id)
    return f" ({error[:300]})" if error else ""


def sweep(store: JobStore, publish_unit: Publish, rescue_seconds: float) -> int:
    """Advance every open pipeline: catches the hooks a dying worker never ran."""
    opened = [as_text(p) for p in store.redis.zrange(OPEN, 0, -1)]
    for pipeline_id in opened:
        advance(store, pipeline_id, publish_unit, rescue_seconds)
    return len(opened)


def view(store: JobStore, pipeline_id: str) -> PipelineView | None:
    raw = store.redis.hgetall(pipeline_key(pipeline_id))
    meta = {as_text(k): as_text(v) for k, v in raw.items()}
    if not meta:
        return None
    jobs = [store.get(job_id) for job_id in json.loads(meta["steps"])]
    return PipelineView(pipeline_id, [j for j in jobs if j is not None], "finished_at" in meta)
