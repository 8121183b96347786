"""The shapes of the API's answers: what the OpenAPI document promises a producer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RecordError(BaseModel):
    where: str = Field(
        description="The record's place: `body:LINE` (JSON Lines, CSV) or "
        "`body:item N` (JSON array); empty for an error of the whole request"
    )
    message: str


class Problem(BaseModel):
    """Every error answer: what failed and what to do, and for a refused body its records."""

    detail: str
    errors: list[RecordError] = Field(default_factory=list)
    stopped_early: bool = Field(
        False, description="True when more errors may follow the ones listed"
    )


class Pause(BaseModel):
    by: str = Field(description="`operator` or `breaker`")
    reason: str
    since: float
    next_probe_at: float | None = None


class Job(BaseModel):
    id: str
    url: str = Field(description="This job in the API (also the Location of a 201)")
    target: str
    state: str = Field(description="staging, queued, running, succeeded, partial, failed or "
                       "cancelled")  # fmt: skip
    params: dict[str, Any] = Field(description="The target's params, as checked")
    created_at: float = Field(description="Epoch seconds")
    started_at: float = Field(description="Epoch seconds of the first unit's start (0: not yet)")
    finished_at: float = Field(description="Epoch seconds of the last unit's end (0: not yet)")
    units_total: int = Field(description="Units the job was cut into (the vendor's limits)")
    units_done: int
    records_total: int
    records_delivered: int = Field(description="Taken by the target")
    records_dead: int = Field(description="Refused for good: see the job's dead letters")
    units_failed: int
    retries: int = Field(description="Unit attempts that will be, or were, tried again")
    crashes: int = Field(description="Worker deaths while running one of its units")
    cancel_reason: str
    duration_seconds: float | None = Field(description="From the first start to the end, or now")
    records_per_second: float | None
    failure: dict[str, Any] | None = Field(
        None, description="Why a failed or partial job failed: its first and most common errors"
    )
    paused: Pause | None = None
    units: list[dict[str, Any]] | None = Field(
        None, description="Each unit: state, records, attempts, remote ids, last error"
    )


class DeadLetter(BaseModel):
    record: dict[str, Any] | None = Field(
        description="The refused record (null: a unit without records failed)"
    )
    reason: str = Field(description="The target's reason, in its own words")
    unit: str = ""
    attempts: int = 0
    at: float = 0.0


class DeadLetterPage(BaseModel):
    job_id: str
    total: int
    offset: int
    limit: int
    items: list[DeadLetter]
    next_offset: int | None


class Replay(BaseModel):
    params: dict[str, Any] = Field(
        default_factory=dict, description="Params of the new job that replace the old"
    )


class Replayed(BaseModel):
    job_id: str
    records: int
    new_job: Job


class Target(BaseModel):
    target: str
    queued: int
    oldest_queued_seconds: float | None
    running: int
    consumers: list[str]
    paused: Pause | None
    paused_units: int
    backlog_records: int
    backlog_jobs: int
    records_per_second: float
    eta_seconds: float | None
    delivered: dict[str, int]
    dead_lettered: dict[str, int]


class PauseRequest(BaseModel):
    reason: str = "paused by an operator"


class Resumed(BaseModel):
    target: str
    was_paused: bool
    woken: int
