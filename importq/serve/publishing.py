"""One body published as a job: what a publisher process (publishers.py) does for a request.

The body is read like `importq publish` reads a file: the same readers, validation,
planner and staging. A refused body is read once more to list its errors, as a dry run
does, for the 422. The answer's job and its target's pause are read back here, in one
round trip, so the HTTP process spends nothing on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog

from importq.errors import InputError
from importq.serve import bodies
from importq.settings import Settings
from producers.dryrun import dry_run
from producers.problems import Problems
from producers.publish import publish
from producers.readers import read_records
from workers import keys
from workers.breaker import Pause, pause_of
from workers.dispatch import Publish
from workers.jobs import JobStore, JobView, view

log = structlog.get_logger("importq.serve")

MAX_ERRORS_SETTING = "IMPORTQ_SERVE_MAX_ERRORS"
DEFAULT_MAX_ERRORS = 20
BODY_NAME = "body"  # records are placed as body:LINE or body:item N


@dataclass(frozen=True)
class Publishing:
    """What a publish needs: the settings, the job store and the queue's sender."""

    settings: Settings
    store: JobStore
    publish_unit: Publish


@dataclass(frozen=True)
class Request:
    """A body to publish, as the HTTP process hands it to a publisher."""

    target: str
    fmt: str  # the reader's format (bodies.body_format)
    params: dict[str, str]


@dataclass(frozen=True)
class Published:
    job_id: str
    cpu: float  # CPU seconds the publish took (its thread's): the body's cost, HTTP aside
    job: JobView | None  # as read right after its publish; None: that read failed
    pause: Pause | None  # its target's, read with it


class RefusedBody(InputError):
    """A body with bad records: every error found (up to the budget) for the 422."""

    def __init__(self, errors: list[InputError], stopped_early: bool) -> None:
        self.errors = errors
        self.stopped_early = stopped_early
        more = f" (and {len(errors) - 1} more listed in errors)" if len(errors) > 1 else ""
        super().__init__(f"refused, nothing was staged: {errors[0]}{more}")

    def __reduce__(self) -> tuple[Any, ...]:  # it crosses from a publisher process
        return (RefusedBody, (self.errors, self.stopped_early))


def publish_body(with_: Publishing, request: Request, body: bodies.Body) -> Published:
    """Stage and release the body as `importq publish` does, then read the job and its
    target's pause for the answer. RefusedBody lists the body's errors; a full queue is
    QueueFull at once (no waiting: the API answers 429)."""
    started = time.thread_time()
    try:
        with body.open() as stream:
            job_id = publish(
                request.target,
                read_records(stream, request.fmt, target=request.target, name=BODY_NAME),
                dict(request.params),
                settings=with_.settings,
                store=with_.store,
                publish_unit=with_.publish_unit,
                wait_when_full=False,
            )
        cpu = time.thread_time() - started
        return Published(job_id, cpu, *job_and_pause(with_.store, job_id, request.target))
    except InputError as first:
        raise _every_error(with_, request, body, first) from None


def _every_error(
    with_: Publishing, request: Request, body: bodies.Body, first: InputError
) -> RefusedBody:
    """Nothing was staged; the body read once more, collecting its errors like a dry run."""
    budget = with_.settings.integer(MAX_ERRORS_SETTING, DEFAULT_MAX_ERRORS, minimum=1)
    problems = Problems(budget)
    try:
        with body.open() as stream:
            records = read_records(stream, request.fmt, target=request.target,
                                   problems=problems, name=BODY_NAME)  # fmt: skip
            report = dry_run(request.target, records, dict(request.params),
                             settings=with_.settings, problems=problems)  # fmt: skip
    except InputError:
        return RefusedBody([first], False)
    return RefusedBody(report.errors or [first], report.stopped_early)


def job_and_pause(store: JobStore, job_id: str, target: str) -> tuple[JobView | None, Pause | None]:
    """A job just published and its target's pause, in one round trip; (None, None) when
    that fails: the job is published all the same, so the error must not reach the code
    that forgets its Idempotency-Key (publish_job reads it again once the key is settled)."""
    try:
        pipe = store.redis.pipeline(transaction=False)
        pipe.hgetall(keys.job(job_id))
        pipe.hgetall(keys.breaker(target))
        stored, paused = pipe.execute()
        job = view(job_id, {k.decode(): v.decode() for k, v in stored.items()})
        return job, pause_of(target, paused) if job else None
    except Exception as error:  # any: reading it back must not unpublish it (see above)
        log.warning("could not read back a job just published", job_id=job_id,
                    error=str(error))  # fmt: skip
        return None, None
