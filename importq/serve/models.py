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
    url: str
    target: str
    state: str
    params: dict[str, Any]
    created_at: float
    started_at: float
    finished_at: float
    units_total: int
    units_done: int
    records_total: int
    records_delivered: int
    records_dead: int
    units_failed: int
    retries: int
    crashes: int
    cancel_reason: str
    duration_seconds: float | None
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
