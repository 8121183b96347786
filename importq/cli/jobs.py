"""`importq status` and `importq jobs`: a job's progress, the recent jobs."""

from __future__ import annotations

import json
import sys
import time

import click

from importq.cli.common import (
    EXIT_CODES,
    SINCE,
    STILL_RUNNING,
    failure_of,
    registered_target,
    show_job,
    wait_options,
    worker_app,
)
from importq.errors import UnknownJob
from importq.progress import pause_of, wait_for_job
from workers.failures import describe
from workers.jobs import JobState, JobView


@click.command()
@click.argument("job_id")
@wait_options("Show progress until the job ends.")
@click.option("--units", "with_units", is_flag=True, help="List every unit with its remote ids.")
@click.option("--json", "as_json", is_flag=True)
def status(job_id: str, wait: bool, timeout: float | None, with_units: bool, as_json: bool) -> None:
    """Show a job. Exit 0 succeeded, 1 failed or cancelled, 2 partial, 3 not finished,
    4 no such job."""
    from workers.jobs import JobStore

    store = JobStore(worker_app().redis_client())
    following = wait or timeout is not None
    job = wait_for_job(store, job_id, as_json, timeout) if following else store.get(job_id)
    if job is None:
        raise UnknownJob(job_id)
    show_job(job, as_json, list(store.units(job_id)) if with_units else None, pause_of(store, job))
    sys.exit(EXIT_CODES.get(job.state, STILL_RUNNING))


SINCE_HELP = "Only jobs created since: 90m, 2h, 1d, or a time (2026-12-07 13:00)."


@click.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in JobState]),
              help="Only jobs in this state (repeat for several).")  # fmt: skip
@click.option("--target", callback=registered_target, help="Only jobs of this target.")
@click.option("--since", type=SINCE, help=SINCE_HELP)
@click.option("--json", "as_json", is_flag=True)
def jobs(
    limit: int, states: tuple[str, ...], target: str | None, since: float | None, as_json: bool
) -> None:
    """List recent jobs, newest first: start, end, duration and records per second."""
    from workers.jobs import JobStore

    store = JobStore(worker_app().redis_client())
    views = store.recent(limit, since=since, target=target, states=set(states))
    pauses = {job.target: pause for job in views if (pause := pause_of(store, job))}
    if as_json:
        rows = []
        for view in views:
            failure = failure_of(view)
            rows.append({**view.as_dict(), "paused": view.target in pauses and not view.finished,
                         "failure": failure.as_dict() if failure else None})  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
        return
    for pause in pauses.values():
        click.echo(pause.describe())
    if views:
        click.echo(JOB_COLUMNS)
    for job in views:
        paused = " (target paused)" if job.target in pauses and not job.finished else ""
        click.echo(f"{_job_row(job)}{paused}")
        failure = failure_of(job)
        for line in describe(failure) if failure else []:
            click.echo(f"    {line}")


JOB_COLUMNS = ("JOB               TARGET           STATE      START               END       "
               "DURATION   REC/S  DELIVERED")  # fmt: skip


def _job_row(job: JobView) -> str:
    start = _clock(job.started_at, "%Y-%m-%d %H:%M:%S") if job.started_at else "-"
    end = _clock(job.finished_at, "%H:%M:%S") if job.finished_at else "-"
    duration, rate = job.duration(), job.records_per_second()
    took = "-" if duration is None else f"{duration:.1f}s"
    pace = "-" if rate is None else f"{rate:g}"
    records = f"{job.records_delivered}/{job.records_total}, {job.records_dead} dead"
    return (f"{job.id:<17} {job.target:<16} {job.state:<10} {start:<19} {end:<9} {took:>8} "
            f"{pace:>7}  {records}")  # fmt: skip


def _clock(epoch: float, layout: str) -> str:
    return time.strftime(layout, time.localtime(epoch))
